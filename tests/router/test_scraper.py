"""The scraper: the runtime's /metrics text in, backend load and per-revision windows out."""

import asyncio

import aiohttp

from shoal.router.backends.endpoints import Endpoint
from shoal.router.backends.registry import STALE_AFTER_FAILED_SCRAPES, BackendRegistry
from shoal.router.scraper import Scraper, parse_runtime_metrics
from shoal.router.traffic.measurements import Measurements
from tests.router.fake_runtime import FakeRuntime

RUNTIME_TEXT = """\
# HELP shoal:kv_cache_usage_perc Fraction of KV blocks in use (1 = full).
# TYPE shoal:kv_cache_usage_perc gauge
shoal:kv_cache_usage_perc{model_name="m",pool="p",revision="v1"} 0.25
# TYPE shoal:num_requests_waiting gauge
shoal:num_requests_waiting{model_name="m",pool="p",revision="v1"} 3.0
# TYPE shoal:num_requests_running gauge
shoal:num_requests_running{model_name="m",pool="p",revision="v1"} 7.0
# TYPE shoal:num_preemptions counter
shoal:num_preemptions_total{model_name="m",pool="p",revision="v1"} 4.0
# TYPE shoal:oom_errors counter
shoal:oom_errors_total{model_name="m",pool="p",revision="v1"} 2.0
# TYPE shoal:time_to_first_token_seconds histogram
shoal:time_to_first_token_seconds_bucket{le="0.1",model_name="m",pool="p",revision="v1"} 1.0
"""


def test_parses_the_runtime_series_it_needs():
    load = parse_runtime_metrics(RUNTIME_TEXT)
    assert (load.kv_usage, load.waiting, load.running, load.preemptions_total, load.oom_errors_total) == (
        0.25,
        3,
        7,
        4,
        2,
    )


def test_scrapes_record_kv_headroom_and_new_preemptions_and_oom_errors_and_flag_unreadable_runtimes():
    async def main():
        fakes = [await FakeRuntime(revision="v1").start() for _ in range(2)]
        fakes[0].kv_usage, fakes[1].kv_usage = 0.2, 0.7
        registry, measurements = BackendRegistry(), Measurements()
        dead = Endpoint("p", "v1", "127.0.0.1:1", "http://127.0.0.1:1/metrics")
        registry.apply(frozenset({Endpoint("p", "v1", f.target, f.metrics_url) for f in fakes} | {dead}))
        for backend in registry.backends():
            backend.serving = True  # as the health prober found: a failing scrape does not change it
        scraper = Scraper(registry, measurements, interval_s=0.1, clock=lambda: 100.0)
        async with aiohttp.ClientSession() as session:
            await scraper.scrape_once(session)
            fakes[1].preemptions, fakes[0].oom_errors = 3, 2
            for _ in range(STALE_AFTER_FAILED_SCRAPES - 1):
                await scraper.scrape_once(session)
        stats = measurements.stats("p", "v1", 60, now=100.0)
        ready = {b.endpoint.target: b.ready for b in registry.backends()}
        failing = {b.endpoint.target: b.metrics_failing for b in registry.backends()}
        loads = {b.endpoint.target: b.scraped.kv_usage for b in registry.backends() if b.scraped}
        for fake in fakes:
            await fake.stop()
        await registry.close_all()
        return stats, ready, failing, loads, fakes

    stats, ready, failing, loads, fakes = asyncio.run(main())
    assert (stats.preemptions, stats.oom_errors) == (3, 2)  # counted once, after the baseline scrape
    assert len(stats.kv_free) == STALE_AFTER_FAILED_SCRAPES  # one per scrape: the fullest runtime's free share
    assert all(abs(v - 0.3) < 1e-9 for v in stats.kv_free)
    assert ready == {fakes[0].target: True, fakes[1].target: True, "127.0.0.1:1": True}
    assert failing == {fakes[0].target: False, fakes[1].target: False, "127.0.0.1:1": True}
    assert loads == {fakes[0].target: 0.2, fakes[1].target: 0.7}


def test_a_runtime_started_after_the_router_is_counted_from_its_start():
    """Its first scrape counts what it counted before (a canary that ran out of memory before the
    router first scraped it is caught); a runtime older than the router gives a baseline."""
    router_started = 1_000_000.0

    async def main():
        young, old = (await FakeRuntime(revision="canary").start(), await FakeRuntime(revision="stable").start())
        young.started_at, young.oom_errors, young.preemptions = router_started + 5, 2, 1
        old.started_at, old.oom_errors, old.preemptions = router_started - 500, 7, 9
        registry, measurements = BackendRegistry(), Measurements()
        registry.apply(frozenset({Endpoint("p", f.revision, f.target, f.metrics_url) for f in (young, old)}))
        scraper = Scraper(
            registry, measurements, interval_s=0.1, clock=lambda: 100.0, wall_clock=lambda: router_started
        )
        async with aiohttp.ClientSession() as session:
            await scraper.scrape_once(session)
        for fake in (young, old):
            await fake.stop()
        await registry.close_all()
        return {r: measurements.stats("p", r, 60, now=100.0) for r in ("canary", "stable")}

    stats = asyncio.run(main())
    assert (stats["canary"].oom_errors, stats["canary"].preemptions) == (2, 1)
    assert (stats["stable"].oom_errors, stats["stable"].preemptions) == (0, 0)
