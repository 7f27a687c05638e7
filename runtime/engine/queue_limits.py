"""Whether a new request may queue, and when a refused client should come back."""

import collections
import math
import time

from shoal.runtime.errors import QueueFullError

# Retry hints stay within these bounds (seconds).
MIN_RETRY_AFTER_S = 1
MAX_RETRY_AFTER_S = 60


class QueueLimits:
    """Refuses requests once `max_waiting` are queued. The retry hint is how long the queue takes
    to drain at the rate requests finished over the last `window_s` seconds."""

    def __init__(self, max_waiting: int, window_s: float = 30.0):
        self.max_waiting = max_waiting
        self.window_s = window_s
        self._finish_times: collections.deque[float] = collections.deque()

    def check(self, num_waiting: int, now: float | None = None) -> None:
        if num_waiting >= self.max_waiting:
            raise QueueFullError(num_waiting, self.retry_after_s(num_waiting, now))

    def record_finish(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._finish_times.append(now)
        self._forget_before(now - self.window_s)

    def retry_after_s(self, num_waiting: int, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        self._forget_before(now - self.window_s)
        if not self._finish_times:
            return MIN_RETRY_AFTER_S
        rate = len(self._finish_times) / self.window_s
        return max(MIN_RETRY_AFTER_S, min(MAX_RETRY_AFTER_S, math.ceil(num_waiting / rate)))

    def _forget_before(self, cutoff: float) -> None:
        while self._finish_times and self._finish_times[0] < cutoff:
            self._finish_times.popleft()
