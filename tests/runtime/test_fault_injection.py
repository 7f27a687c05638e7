"""The test-only fault injection: off unless asked for, and it delays and fails as configured."""

import asyncio
import random
import time
from types import SimpleNamespace

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from shoal.runtime.server.fault_injection import FaultInjection
from shoal.runtime.server.http_server import build_http_app


def test_no_flags_build_no_fault_injection():
    assert FaultInjection.from_settings(0.0, 0.0, False) is None


def test_error_rate_fails_about_that_fraction_of_requests():
    faults = FaultInjection(error_rate=0.3, rng=random.Random(1))
    outcomes = [asyncio.run(faults.next_fault()) for _ in range(2000)]
    failed = sum(o is not None for o in outcomes)
    assert 500 < failed < 700  # 600 expected; the binomial sd is 20
    assert all(o is None or "injected fault" in o for o in outcomes)


def test_latency_delays_each_request():
    faults = FaultInjection.from_settings(0.05, 0.0, False)
    start = time.monotonic()
    assert asyncio.run(faults.next_fault()) is None
    assert time.monotonic() - start >= 0.05


def test_metrics_unavailable_fails_the_scrape_only():
    """The probes and everything else answer as ever; only /metrics is 503."""

    async def main():
        engine = SimpleNamespace(healthy=True, accepting=True, paused=False)  # what the HTTP side reads of it
        faults = FaultInjection.from_settings(0.0, 0.0, True)
        async with TestClient(TestServer(build_http_app(engine, CollectorRegistry(), faults))) as client:
            return {path: (await client.get(path)).status for path in ("/metrics", "/health", "/ready")}

    assert asyncio.run(main()) == {"/metrics": 503, "/health": 200, "/ready": 200}
