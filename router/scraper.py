"""Polls every runtime's /metrics on an interval (parsed with prometheus_client's parser).

Each backend gets its load for the balancer (KV usage, queue depth); each revision gets a KV-free
sample (its fullest runtime's) and the preemptions and out-of-memory errors since the last scrape,
for the rollback rules. A runtime whose /metrics fails a few times in a row has its load forgotten
until it answers (registry.py); its counters are read on from where they were. A runtime's first
scrape counts all it counted if it started after the router did, and is a baseline otherwise.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from shoal import metric_names as names
from shoal.router.backends.registry import Backend, BackendRegistry, ScrapedLoad
from shoal.router.traffic.measurements import Measurements, ScrapeSample

log = logging.getLogger(__name__)
_GAUGES = {
    names.KV_CACHE_USAGE_PERC: "kv_usage",
    names.NUM_REQUESTS_WAITING: "waiting",
    names.NUM_REQUESTS_RUNNING: "running",
}
_COUNTERS = {
    names.NUM_PREEMPTIONS + "_total": "preemptions_total",
    names.OOM_ERRORS + "_total": "oom_errors_total",
}


def parse_runtime_metrics(text: str) -> ScrapedLoad:
    """The few series the router uses, summed over label sets (one runtime exposes one)."""
    load = ScrapedLoad()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in _GAUGES:
                attribute = _GAUGES[sample.name]
                setattr(load, attribute, type(getattr(load, attribute))(sample.value))
            elif sample.name in _COUNTERS:
                setattr(load, _COUNTERS[sample.name], int(sample.value))
            elif sample.name == names.PROCESS_START_TIME:
                load.started_at = sample.value
    return load


@dataclass(frozen=True)
class _Increase:
    """One runtime's counters' increase since its scrape before."""

    preemptions: int = 0
    oom_errors: int = 0


class Scraper:
    def __init__(
        self,
        backends: BackendRegistry,
        measurements: Measurements,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        timeout_s: float = 2.0,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.backends = backends
        self.measurements = measurements
        self.interval_s = interval_s
        self.clock = clock
        self.started_at = wall_clock()
        self.timeout = aiohttp.ClientTimeout(total=min(timeout_s, max(interval_s, 0.5)))

    async def run(self) -> None:
        async with aiohttp.ClientSession(timeout=self.timeout) as session:
            while True:
                try:
                    await self.scrape_once(session)
                except Exception:  # a bug must not end scraping for good
                    log.exception("scrape failed")
                await asyncio.sleep(self.interval_s)

    async def scrape_once(self, session: aiohttp.ClientSession) -> None:
        backends = [b for b in self.backends.backends() if b.endpoint.metrics_url]
        increases = await asyncio.gather(*(self._scrape(session, b) for b in backends))
        now = self.clock()
        by_revision: dict[tuple[str, str], list[tuple[Backend, _Increase]]] = {}
        for backend, increase in zip(backends, increases, strict=True):
            by_revision.setdefault((backend.endpoint.pool, backend.endpoint.revision), []).append((backend, increase))
        for (pool, revision), entries in by_revision.items():
            fresh = [b.scraped for b, _ in entries if b.scraped is not None and b.failed_scrapes == 0]
            sample = ScrapeSample(
                kv_free=min(1.0 - s.kv_usage for s in fresh) if fresh else None,
                preemptions=sum(i.preemptions for _, i in entries),
                oom_errors=sum(i.oom_errors for _, i in entries),
            )
            self.measurements.record_scrape(pool, revision, now, sample)

    async def _scrape(self, session: aiohttp.ClientSession, backend: Backend) -> _Increase:
        """Scrapes one runtime; returns its counters' increase since the last scrape that answered."""
        try:
            async with session.get(backend.endpoint.metrics_url) as response:
                response.raise_for_status()
                load = parse_runtime_metrics(await response.text())
        except (TimeoutError, aiohttp.ClientError, ValueError) as error:
            backend.failed_scrapes += 1
            if backend.failed_scrapes == 1:
                log.warning("scrape of %s failed: %s", backend.endpoint.metrics_url, _why(error))
            return _Increase()
        previous = backend.scraped
        backend.scraped = load
        backend.failed_scrapes = 0
        if previous is None:
            # A runtime that started after this router: everything it counted is new (a canary that
            # ran out of memory before its first scrape is not let off). An older one: a baseline.
            if load.started_at is not None and load.started_at >= self.started_at:
                return _Increase(load.preemptions_total, load.oom_errors_total)
            return _Increase()
        return _Increase(
            preemptions=_increase(previous.preemptions_total, load.preemptions_total),
            oom_errors=_increase(previous.oom_errors_total, load.oom_errors_total),
        )


def _why(error: Exception) -> str:
    if isinstance(error, aiohttp.ClientResponseError):
        return f"HTTP {error.status}"
    return repr(error)


def _increase(before: int, now: int) -> int:
    """A counter's increase between two scrapes; one that went down was reset (the runtime restarted)."""
    return now if now < before else now - before
