"""A pool's cold-start hold: a request for a pool with no ready runtime waits here until one is ready;
traffic/hold.py's HoldQueue keeps who waits (this module only turns it into waiting and waking futures).

`wait` returns once `release` is called, which the pool does when a runtime of a revision it routes
to becomes ready (pools.py, on every change the registry reports). It raises Overloaded (429 with
Retry-After) at once when the queue is full, and Unavailable (503 with Retry-After) past max_wait_s.
A waiter whose client leaves is withdrawn.
"""

import asyncio
import time
from collections.abc import Callable

from shoal.route_contract import ColdStart
from shoal.router.errors import Overloaded, Unavailable
from shoal.router.traffic.hold import TIMED_OUT_RETRY_AFTER_S, HoldQueue


class ColdStartHold:
    def __init__(self, config: ColdStart, clock: Callable[[], float] = time.monotonic):
        self.queue = HoldQueue(config)
        self.clock = clock
        self.timed_out = 0  # held requests answered 503 after max_wait_s, for metrics

    @property
    def config(self) -> ColdStart:
        return self.queue.config

    def held(self) -> int:
        return len(self.queue)

    async def wait(self, model: str) -> None:
        future = asyncio.get_running_loop().create_future()
        now = self.clock()
        if not self.queue.arrive(future, now):
            raise Overloaded(
                f"Too many requests wait for a runtime of `{model}` to start (at most {self.config.max_queued}). "
                "Please retry later.",
                self.queue.retry_after_s(now),
            )
        try:
            # wait_for cancels the future when it gives up, so release() passes it over.
            await asyncio.wait_for(future, self.config.max_wait_s)
        except TimeoutError:
            if not self.queue.withdraw(future):  # released at that very moment: go on
                return
            self.timed_out += 1
            raise Unavailable(
                f"No runtime of `{model}` became ready within {self.config.max_wait_s:g}s; the pool is starting. "
                "Please retry later.",
                headers={"retry-after": str(TIMED_OUT_RETRY_AFTER_S)},
            ) from None
        except asyncio.CancelledError:
            self.queue.withdraw(future)
            raise

    def release(self) -> None:
        """Every held request goes on, oldest first (their tasks wake in that order)."""
        for future in self.queue.release():
            if not future.done():
                future.set_result(None)

    def reconfigure(self, config: ColdStart) -> None:
        """New bounds for requests that arrive from now on; turned off, the held ones go on at once
        (and meet what a pool without a hold does: a 503, or an unready runtime tried all the same)."""
        self.queue.config = config
        if not config.enabled:
            self.release()
