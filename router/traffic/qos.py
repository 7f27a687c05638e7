"""QoS admission for one pool: realtime first, batch within a share that shrinks under pressure.

The pool has a concurrency capacity (requests the router keeps in flight to its runtimes). Realtime
requests may use all of it; batch requests at most `batch_limit`, which BatchShare moves between
the configured min and max shares as realtime TTFT nears its target. Waiting requests queue per
class in bounded queues; realtime is always admitted before batch. Under overload batch is shed
first: while realtime requests wait, new batch requests are refused at once. Realtime is refused
when its own queue is full, or when it would wait longer than the realtime TTFT target (`late`): it
would miss its target for certain, and waiting it out only makes the requests behind it later too.
Its wait is foreseen from the queue ahead and the rate at which slots freed while requests were
waiting (the pool's service rate at saturation); before there is such a rate, from how long the
request at the head of the queue has waited. Under sustained overload realtime so queues for about
its target and is refused at once beyond it, as CoDel bounds a queue by the time spent in it rather
than by its length.

Pure logic: waiters are opaque tickets (the async gate in shoal.router.qos_gate wraps them in
futures) and time is an argument.
"""

import collections
import math
from dataclasses import dataclass
from enum import Enum

from shoal.route_contract import QosConfig

REALTIME, BATCH = "realtime", "batch"
MIN_RETRY_AFTER_S, MAX_RETRY_AFTER_S = 1, 60
RATE_WINDOW_S = 10.0  # the completions Retry-After's drain rate is measured over
SERVICE_SAMPLES = 8  # the last slots freed while requests waited, for the service rate
MIN_SERVICE_SAMPLES = 4


class Decision(Enum):
    ADMITTED = "admitted"
    QUEUED = "queued"
    SHED = "shed"


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    reason: str = ""  # why shed: "queue_full", "overload" or "late"


class QosPolicy:
    def __init__(self, config: QosConfig, capacity: int = 0):
        self.config = config
        self.capacity = capacity
        self.batch_limit = max(1, math.floor(config.batch_share_max * capacity)) if capacity else 0
        self.in_flight = {REALTIME: 0, BATCH: 0}
        self.waiting: dict[str, collections.deque] = {REALTIME: collections.deque(), BATCH: collections.deque()}
        self._queued_at: dict[object, float] = {}  # waiting ticket -> when it joined its queue
        self._finishes: collections.deque[float] = collections.deque()
        self._saturated_finishes: collections.deque[float] = collections.deque(maxlen=SERVICE_SAMPLES)

    # --- decisions ---

    def arrive(self, qos: str, ticket, now: float) -> Outcome:
        if qos == REALTIME:
            if self._total_in_flight() < self.capacity and not self.waiting[REALTIME]:
                self.in_flight[REALTIME] += 1
                return Outcome(Decision.ADMITTED)
            if len(self.waiting[REALTIME]) >= self.config.realtime_queue:
                return Outcome(Decision.SHED, "queue_full")
            if self.foreseen_wait_s(now) > self.config.realtime_ttft_target_s:
                return Outcome(Decision.SHED, "late")
        else:
            if self.waiting[REALTIME]:
                return Outcome(Decision.SHED, "overload")  # realtime is queueing: batch goes first
            if self._batch_may_start() and not self.waiting[BATCH]:
                self.in_flight[BATCH] += 1
                return Outcome(Decision.ADMITTED)
            if len(self.waiting[BATCH]) >= self.config.batch_queue:
                return Outcome(Decision.SHED, "queue_full")
        self.waiting[qos].append(ticket)
        self._queued_at[ticket] = now
        return Outcome(Decision.QUEUED)

    def depart(self, qos: str, now: float) -> list[tuple[str, object]]:
        """A request finished; returns the (class, ticket) pairs admitted in its place."""
        self.in_flight[qos] -= 1
        if self.waiting[REALTIME] or self.waiting[BATCH]:
            self._saturated_finishes.append(now)
        self._finishes.append(now)
        self._forget_finishes(now)
        return self.pump()

    def withdraw(self, qos: str, ticket) -> bool:
        """A waiter gave up (timeout or client gone); False if it was not waiting."""
        try:
            self.waiting[qos].remove(ticket)
        except ValueError:
            return False
        del self._queued_at[ticket]
        return True

    def pump(self) -> list[tuple[str, object]]:
        admitted = []
        while self.waiting[REALTIME] and self._total_in_flight() < self.capacity:
            admitted.append((REALTIME, self._start(REALTIME)))
        while self.waiting[BATCH] and not self.waiting[REALTIME] and self._batch_may_start():
            admitted.append((BATCH, self._start(BATCH)))
        return admitted

    def foreseen_wait_s(self, now: float) -> float:
        """How long a realtime request joining its queue now would wait: the queue ahead of it (and
        itself) at the recent service rate; without one, at least as long as the head has waited."""
        head_waited = self.waited_s(REALTIME, now)
        times = self._saturated_finishes
        if len(times) < MIN_SERVICE_SAMPLES or now - times[-1] > RATE_WINDOW_S:
            return head_waited
        span = times[-1] - times[0]
        if span <= 0:
            return head_waited
        rate_per_s = (len(times) - 1) / span
        return max(head_waited, (len(self.waiting[REALTIME]) + 1) / rate_per_s)

    def load(self) -> float:
        """Requests in flight plus those queued, both classes, over the capacity: 1.0 is a full pool
        with nothing waiting, above it a queue; infinite while the pool has no capacity."""
        demand = self._total_in_flight() + len(self.waiting[REALTIME]) + len(self.waiting[BATCH])
        return demand / self.capacity if self.capacity else math.inf

    def waited_s(self, qos: str, now: float) -> float:
        """How long the request at the head of the class's queue has waited (0 with none waiting)."""
        queue = self.waiting[qos]
        return now - self._queued_at[queue[0]] if queue else 0.0

    def _start(self, qos: str):
        self.in_flight[qos] += 1
        ticket = self.waiting[qos].popleft()
        del self._queued_at[ticket]
        return ticket

    # --- capacity ---

    def set_capacity(self, capacity: int, batch_share: float) -> list[tuple[str, object]]:
        """New endpoint count or batch share; returns waiters that may start now."""
        self.capacity = capacity
        self.batch_limit = max(1, math.floor(batch_share * capacity)) if capacity else 0
        return self.pump()

    def retry_after_s(self, qos: str, now: float) -> int:
        """How long a request of class `qos` turned away now should wait before trying again: until the
        queue ahead of it has drained at the recent completion rate (see drain_time_s)."""
        self._forget_finishes(now)
        ahead = len(self.waiting[REALTIME]) + (len(self.waiting[BATCH]) if qos == BATCH else 0)
        return drain_time_s(ahead, len(self._finishes), RATE_WINDOW_S)

    def _batch_may_start(self) -> bool:
        return self.in_flight[BATCH] < self.batch_limit and self._total_in_flight() < self.capacity

    def _total_in_flight(self) -> int:
        return self.in_flight[REALTIME] + self.in_flight[BATCH]

    def _forget_finishes(self, now: float) -> None:
        while self._finishes and self._finishes[0] < now - RATE_WINDOW_S:
            self._finishes.popleft()


def drain_time_s(queued_ahead: int, completions: int, window_s: float) -> int:
    """Seconds until `queued_ahead` waiting requests and then one more have started, at the rate of
    `completions` in the last `window_s` seconds (each completion frees one slot), rounded up and
    clamped to [MIN_RETRY_AFTER_S, MAX_RETRY_AFTER_S]. No completion in the window means the rate is
    below one per window, not unknown: long requests then hold every slot, and a client told to
    retry in a second would only come back to the same full queue, so the estimate is one window
    per request."""
    rate_per_s = max(completions, 1) / window_s
    seconds = math.ceil((queued_ahead + 1) / rate_per_s)
    return max(MIN_RETRY_AFTER_S, min(MAX_RETRY_AFTER_S, seconds))


class BatchShare:
    """AIMD on batch's share of the pool: halve it (down to min) while realtime p95 TTFT is above
    `near` x target; add `step` (up to max) while it is below `relax` x target or there is no
    realtime traffic; hold in between."""

    def __init__(
        self, config: QosConfig, near: float = 0.8, relax: float = 0.5, step: float = 0.05, decrease: float = 0.5
    ):
        self.config = config
        self.share = config.batch_share_max
        self.near, self.relax, self.step, self.decrease = near, relax, step, decrease

    def reconfigure(self, config: QosConfig) -> None:
        """New bounds or target; the share moves inside the new bounds if it has to."""
        self.config = config
        self.share = min(config.batch_share_max, max(config.batch_share_min, self.share))

    def update(self, realtime_ttft_p95_s: float | None) -> float:
        target = self.config.realtime_ttft_target_s
        if realtime_ttft_p95_s is not None and realtime_ttft_p95_s > self.near * target:
            self.share = max(self.config.batch_share_min, self.share * self.decrease)
        elif realtime_ttft_p95_s is None or realtime_ttft_p95_s < self.relax * target:
            self.share = min(self.config.batch_share_max, self.share + self.step)
        return self.share
