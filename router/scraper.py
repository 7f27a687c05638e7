"""Polls every runtime's /metrics on an interval (parsed with prometheus_client's parser).

Each backend gets its load for the balancer (KV usage, queue depth); each revision gets a KV-free
sample (its fullest runtime's) and the preemptions since the last scrape, for the rollback rules.
A runtime whose /metrics fails a few times in a row is taken out of the balancer until it answers.
"""

import asyncio
import logging
import time
from collections.abc import Callable

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from shoal import metric_names as names
from shoal.router.backends.registry import Backend, BackendRegistry, ScrapedLoad
from shoal.router.traffic.measurements import Measurements

log = logging.getLogger(__name__)
_GAUGES = {
    names.KV_CACHE_USAGE_PERC: "kv_usage",
    names.NUM_REQUESTS_WAITING: "waiting",
    names.NUM_REQUESTS_RUNNING: "running",
}


def parse_runtime_metrics(text: str) -> ScrapedLoad:
    """The few series the router uses, summed over label sets (one runtime exposes one)."""
    load = ScrapedLoad()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in _GAUGES:
                attribute = _GAUGES[sample.name]
                setattr(load, attribute, type(getattr(load, attribute))(sample.value))
            elif sample.name == names.NUM_PREEMPTIONS + "_total":
                load.preemptions_total = int(sample.value)
    return load


class Scraper:
    def __init__(
        self,
        backends: BackendRegistry,
        measurements: Measurements,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        timeout_s: float = 2.0,
    ):
        self.backends = backends
        self.measurements = measurements
        self.interval_s = interval_s
        self.clock = clock
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
        preemptions = await asyncio.gather(*(self._scrape(session, b) for b in backends))
        now = self.clock()
        by_revision: dict[tuple[str, str], list[tuple[Backend, int]]] = {}
        for backend, new_preemptions in zip(backends, preemptions, strict=True):
            by_revision.setdefault((backend.endpoint.pool, backend.endpoint.revision), []).append(
                (backend, new_preemptions)
            )
        for (pool, revision), entries in by_revision.items():
            fresh = [b.scraped for b, _ in entries if b.scraped is not None and b.failed_scrapes == 0]
            kv_free = min(1.0 - s.kv_usage for s in fresh) if fresh else None
            self.measurements.record_scrape(pool, revision, now, kv_free, sum(n for _, n in entries))

    async def _scrape(self, session: aiohttp.ClientSession, backend: Backend) -> int:
        """Scrapes one runtime; returns its preemptions since the last scrape."""
        try:
            async with session.get(backend.endpoint.metrics_url) as response:
                response.raise_for_status()
                load = parse_runtime_metrics(await response.text())
        except (TimeoutError, aiohttp.ClientError, ValueError) as error:
            backend.failed_scrapes += 1
            if backend.failed_scrapes == 1:
                log.warning("scrape of %s failed: %r", backend.endpoint.metrics_url, error)
            return 0
        previous = backend.scraped
        backend.scraped = load
        backend.failed_scrapes = 0
        if previous is None:
            return 0  # the first scrape sets the baseline
        if load.preemptions_total < previous.preemptions_total:
            return load.preemptions_total  # the runtime restarted
        return load.preemptions_total - previous.preemptions_total
