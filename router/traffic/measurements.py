"""What the router measures per pool x revision x QoS class, over rolling windows.

From its own requests: TTFT, inter-token latency and end-to-end latency samples (timed from when
the request left the cold-start hold; dispatch.py says why), and counts of finished requests,
errors (5xx and upstream failures) and tokens. From scraping each runtime's /metrics: KV free
fraction (of the revision's fullest runtime), preemptions and out-of-memory errors. Rollback rules,
the QoS controller, the admin API and the router's /metrics all read it through `stats`.
"""

from dataclasses import dataclass, field

from shoal.router.traffic.windows import CountWindow, SampleWindow, quantile

LATENCIES = ("ttft", "itl", "e2e")
_COUNTS = ("requests", "errors", "prompt_tokens", "completion_tokens")
ADMIN_QUANTILES = (0.5, 0.95, 0.99)


@dataclass
class RevisionStats:
    """One window's worth for one revision (one QoS class, or all of them)."""

    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    window_s: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in LATENCIES})
    preemptions: int = 0
    oom_errors: int = 0
    kv_free: list[float] = field(default_factory=list)  # one per scrape: the fullest runtime's free fraction

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.window_s if self.window_s else 0.0

    @property
    def kv_free_mean(self) -> float | None:
        return sum(self.kv_free) / len(self.kv_free) if self.kv_free else None

    def quantile(self, metric: str, q: float) -> float | None:
        return quantile(self.latencies[metric], q)

    def summary(self) -> dict:
        """JSON for the admin API."""
        out = {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 6),
            "completion_tokens_per_s": round(self.tokens_per_s, 3),
        }
        for name in LATENCIES:
            values = self.latencies[name]
            out[f"{name}_s"] = {"samples": len(values)} | {
                f"p{q * 100:g}": _round(quantile(values, q)) for q in ADMIN_QUANTILES
            }
        out["preemptions"] = self.preemptions
        out["oom_errors"] = self.oom_errors
        out["kv_free"] = _round(self.kv_free_mean)
        return out


class _RequestWindows:
    def __init__(self, retention_s: float):
        self.retention_s = retention_s
        self.latencies = {name: SampleWindow(retention_s) for name in LATENCIES}
        self.counts = CountWindow(retention_s, _COUNTS)

    def retain(self, seconds: float) -> None:
        self.retention_s = seconds
        for window in [*self.latencies.values(), self.counts]:
            window.retention_s = seconds

    def empty(self, now: float) -> bool:
        no_samples = not any(window.values(now) for window in self.latencies.values())
        return no_samples and not any(self.counts.totals(now, self.retention_s).values())


@dataclass(frozen=True)
class ScrapeSample:
    """One scrape of a revision's runtimes."""

    kv_free: float | None  # its fullest runtime's free KV fraction; None: none of them answered
    preemptions: int = 0  # all its runtimes', since the scrape before
    oom_errors: int = 0


_SCRAPE_COUNTS = ("preemptions", "oom_errors")


class _ScrapeWindows:
    def __init__(self, retention_s: float):
        self.kv_free = SampleWindow(retention_s, max_samples=10_000)
        self.counts = CountWindow(retention_s, _SCRAPE_COUNTS)

    def retain(self, seconds: float) -> None:
        self.kv_free.retention_s = self.counts.retention_s = seconds

    def empty(self, now: float) -> bool:
        return not self.kv_free.values(now) and not any(self.counts.totals(now, self.counts.retention_s).values())


class Measurements:
    def __init__(self, retention_s: float = 300.0):
        self.retention_s = retention_s
        self._requests: dict[tuple[str, str, str], _RequestWindows] = {}
        self._scrapes: dict[tuple[str, str], _ScrapeWindows] = {}

    def retain(self, seconds: float) -> None:
        """Keeps at least `seconds` from now on (a pool added or changed at run time looks that far back)."""
        if seconds <= self.retention_s:
            return
        self.retention_s = seconds
        for windows in [*self._requests.values(), *self._scrapes.values()]:
            windows.retain(seconds)

    def _windows(self, pool: str, revision: str, qos: str) -> _RequestWindows:
        key = (pool, revision, qos)
        if key not in self._requests:
            self._requests[key] = _RequestWindows(self.retention_s)
        return self._requests[key]

    def record_first_token(self, pool: str, revision: str, qos: str, ttft_s: float, now: float) -> None:
        self._windows(pool, revision, qos).latencies["ttft"].add(ttft_s, now)

    def record_finish(
        self,
        pool: str,
        revision: str,
        qos: str,
        now: float,
        *,
        error: bool,
        e2e_s: float | None = None,
        token_gaps_s: list[float] = (),
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        windows = self._windows(pool, revision, qos)
        windows.counts.add(
            now, requests=1, errors=int(error), prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
        if e2e_s is not None:
            windows.latencies["e2e"].add(e2e_s, now)
        for gap in token_gaps_s:
            windows.latencies["itl"].add(gap, now)

    def record_scrape(self, pool: str, revision: str, now: float, sample: ScrapeSample) -> None:
        key = (pool, revision)
        if key not in self._scrapes:
            self._scrapes[key] = _ScrapeWindows(self.retention_s)
        windows = self._scrapes[key]
        if sample.kv_free is not None:
            windows.kv_free.add(sample.kv_free, now)
        windows.counts.add(now, preemptions=sample.preemptions, oom_errors=sample.oom_errors)

    def stats(
        self, pool: str, revision: str | None, window_s: float, now: float, qos: str | None = None
    ) -> RevisionStats:
        """One revision's window (all revisions of the pool if None; all QoS classes if qos is None)."""
        stats = RevisionStats(window_s=min(window_s, self.retention_s))
        for (p, r, q), windows in self._requests.items():
            if p != pool or (revision is not None and r != revision) or (qos is not None and q != qos):
                continue
            totals = windows.counts.totals(now, window_s)
            stats.requests += int(totals["requests"])
            stats.errors += int(totals["errors"])
            stats.prompt_tokens += int(totals["prompt_tokens"])
            stats.completion_tokens += int(totals["completion_tokens"])
            for name, window in windows.latencies.items():
                stats.latencies[name].extend(window.values(now, window_s))
        scrapes = self._scrapes.get((pool, revision)) if revision is not None else None
        if scrapes is not None:
            stats.kv_free = scrapes.kv_free.values(now, window_s)
            counts = scrapes.counts.totals(now, window_s)
            stats.preemptions, stats.oom_errors = int(counts["preemptions"]), int(counts["oom_errors"])
        return stats

    def keys(self) -> list[tuple[str, str, str]]:
        """(pool, revision, qos) seen so far."""
        return sorted(self._requests)

    def revisions(self, pool: str) -> list[str]:
        return sorted({r for p, r, _ in self._requests if p == pool} | {r for p, r in self._scrapes if p == pool})

    def prune(self, now: float) -> None:
        """Drops the windows of revisions that have seen nothing for the whole retention (gone revisions)."""
        for key, windows in list(self._requests.items()):
            if windows.empty(now):
                del self._requests[key]
        for key, windows in list(self._scrapes.items()):
            if windows.empty(now):
                del self._scrapes[key]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
