"""Rolling windows: the samples and counts of the last N seconds, bounded in memory.

Time is an argument (monotonic seconds), so tests drive the clock. A SampleWindow keeps raw values
(latencies) and answers exact quantiles; a CountWindow keeps per-second sums (requests, errors,
tokens). Both forget what is older than their retention and never hold more than their cap.
"""

import collections
import math


class SampleWindow:
    def __init__(self, retention_s: float, max_samples: int = 20_000):
        self.retention_s = retention_s
        self._samples: collections.deque[tuple[float, float]] = collections.deque(maxlen=max_samples)

    def add(self, value: float, now: float) -> None:
        self._samples.append((now, value))

    def values(self, now: float, window_s: float | None = None) -> list[float]:
        """The values of the last window_s seconds (at most the retention), oldest first."""
        self._forget(now)
        if window_s is None or window_s >= self.retention_s:
            return [v for _, v in self._samples]
        cutoff = now - window_s
        return [v for t, v in self._samples if t >= cutoff]

    def __len__(self) -> int:
        return len(self._samples)

    def _forget(self, now: float) -> None:
        cutoff = now - self.retention_s
        while self._samples and self._samples[0][0] < cutoff:
            self._samples.popleft()


class CountWindow:
    """Sums per whole second; `totals` adds up the seconds inside the window."""

    def __init__(self, retention_s: float, fields: tuple[str, ...]):
        self.retention_s = retention_s
        self.fields = fields
        self._buckets: collections.deque[list] = collections.deque()  # [second, count per field...]

    def add(self, now: float, **counts: float) -> None:
        second = math.floor(now)
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second] + [0] * len(self.fields))
            self._forget(now)
        bucket = self._buckets[-1]
        for name, value in counts.items():
            bucket[1 + self.fields.index(name)] += value

    def totals(self, now: float, window_s: float) -> dict[str, float]:
        self._forget(now)
        cutoff = math.floor(now - window_s)
        sums = [0] * len(self.fields)
        for bucket in self._buckets:
            if bucket[0] > cutoff:
                for i in range(len(sums)):
                    sums[i] += bucket[1 + i]
        return dict(zip(self.fields, sums, strict=True))

    def _forget(self, now: float) -> None:
        cutoff = math.floor(now - self.retention_s)
        while self._buckets and self._buckets[0][0] <= cutoff:
            self._buckets.popleft()


def quantile(values: list[float], q: float) -> float | None:
    """The q-quantile by linear interpolation between closest ranks (numpy's default); None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
