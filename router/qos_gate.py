"""The QoS gate: a request waits here for a slot in its pool; traffic/qos.py's QosPolicy decides who
gets one (this module only turns its decisions into waiting and waking futures).

`acquire` returns at once when there is room, waits in its class's bounded queue when there is not,
and raises Overloaded (429 with Retry-After) when shed or when it waited past max_queue_wait_s. A
waiter whose client leaves is withdrawn; a slot granted at that very moment is given back.
"""

import asyncio
import time
from collections.abc import Callable

from shoal.route_contract import QosConfig
from shoal.router.errors import Overloaded
from shoal.router.traffic.qos import Decision, QosPolicy


class QosGate:
    def __init__(self, config: QosConfig, clock: Callable[[], float] = time.monotonic):
        self.policy = QosPolicy(config)
        self.config = config
        self.clock = clock
        self.shed_counts: dict[tuple[str, str], int] = {}  # (qos, reason) -> count, for metrics

    async def acquire(self, qos: str) -> None:
        future = asyncio.get_running_loop().create_future()
        outcome = self.policy.arrive(qos, future, self.clock())
        if outcome.decision is Decision.ADMITTED:
            return
        if outcome.decision is Decision.SHED:
            raise self._shed(qos, outcome.reason)
        try:
            await asyncio.wait_for(asyncio.shield(future), self.config.max_queue_wait_s)
        except (TimeoutError, asyncio.CancelledError) as error:
            if not self.policy.withdraw(qos, future):  # admitted just now: hand the slot back
                self.release(qos)
            if isinstance(error, asyncio.CancelledError):
                raise
            raise self._shed(qos, "queue_timeout") from None

    def release(self, qos: str) -> None:
        self._wake(self.policy.depart(qos, self.clock()))

    def reconfigure(self, config: QosConfig) -> None:
        """New queue bounds and waits; who waits or runs stays (the capacity comes with set_capacity)."""
        self.config = self.policy.config = config

    def set_capacity(self, capacity: int, batch_share: float) -> None:
        self._wake(self.policy.set_capacity(capacity, batch_share))

    def queued(self, qos: str) -> int:
        return len(self.policy.waiting[qos])

    def in_flight(self, qos: str) -> int:
        return self.policy.in_flight[qos]

    def load(self) -> float:
        return self.policy.load()

    def _wake(self, admitted: list[tuple[str, asyncio.Future]]) -> None:
        for _, future in admitted:
            if not future.done():
                future.set_result(None)

    def _shed(self, qos: str, reason: str) -> Overloaded:
        key = (qos, reason)
        self.shed_counts[key] = self.shed_counts.get(key, 0) + 1
        what = {
            "queue_full": "its queue is full",
            "overload": "realtime traffic has priority",
            "queue_timeout": "it waited too long",
            "late": "the requests queued ahead of it have waited longer than the TTFT target",
        }
        return Overloaded(
            f"The {qos} request was shed because the model is overloaded ({what[reason]}). Please retry later.",
            self.policy.retry_after_s(qos, self.clock()),
        )
