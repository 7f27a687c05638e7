"""Holding a pool's requests while it has no ready runtime: it scaled to zero, or every replica is
still starting. They wait in a bounded queue, each up to the route's `cold_start.max_wait_s`, and all
go on, oldest first, when the first runtime is ready; past the bound a request is refused at once.

Pure logic: waiters are opaque tickets (the async hold in shoal.router.cold_start wraps them in
futures) and time is an argument.
"""

import math

from shoal.route_contract import ColdStart
from shoal.router.traffic.qos import MAX_RETRY_AFTER_S, MIN_RETRY_AFTER_S

# A request that waited out max_wait_s is told to come back soon: its retry is held again (it costs
# the pool a place in the queue, not a runtime's time), and the runtime may be nearly up by then.
TIMED_OUT_RETRY_AFTER_S = 5


class HoldQueue:
    def __init__(self, config: ColdStart):
        self.config = config
        self._held: dict[object, float] = {}  # ticket -> when it arrived; a dict keeps arrival order

    def __len__(self) -> int:
        return len(self._held)

    def arrive(self, ticket, now: float) -> bool:
        """Holds the ticket; False when max_queued are held already (the request is refused at once)."""
        if len(self._held) >= self.config.max_queued:
            return False
        self._held[ticket] = now
        return True

    def withdraw(self, ticket) -> bool:
        """A held request gave up (it waited too long, or its client left); False if it was not held."""
        return self._held.pop(ticket, None) is not None

    def release(self) -> list:
        """Every held ticket, oldest first; none is held after."""
        released = list(self._held)
        self._held.clear()
        return released

    def oldest_s(self, now: float) -> float:
        """How long the oldest held request has waited; 0 with none held."""
        return now - next(iter(self._held.values())) if self._held else 0.0

    def retry_after_s(self, now: float) -> int:
        """For a request refused by a full queue: the oldest held one leaves, released or timed out, by
        the time it has waited max_wait_s, and frees a place; clamped as the QoS queue's hints are."""
        seconds = math.ceil(self.config.max_wait_s - self.oldest_s(now))
        return max(MIN_RETRY_AFTER_S, min(MAX_RETRY_AFTER_S, seconds))
