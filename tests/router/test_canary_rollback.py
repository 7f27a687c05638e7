"""Must show 2: canary split and automatic rollback with real runtimes.

Revisions r1 (stable) and r2 (canary) of pool `chat`, each a `shoal runtime` process, reach the
router through the Kubernetes endpoint source fed by an in-memory EndpointSlice watch. At 90/10
the split over 1,000 requests must fall inside the binomial 99.999% interval, counted both from
the router's answers and from the runtimes' own counters. Then the canary's pod is replaced by one
started with the test-only `--fault-error-rate`: the router must roll it back by itself within
seconds, send it nothing afterwards, and stable's clients must never have seen an error.
"""

import asyncio
import collections
import math
import time
import urllib.request

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shoal.router.backends.kubernetes import InMemoryEndpointSliceWatch, KubernetesEndpointSource
from tests.router.conftest import MODEL, start_runtimes
from tests.router.harness import RouterInThread, get_json, make_config
from tests.router.http_client import post

pytestmark = pytest.mark.integration
REQUESTS = 1000
CANARY_WEIGHT = 10.0
SIGMAS = 4.42  # two-sided 99.999%


@pytest.fixture(scope="module")
def canaries():
    healthy, faulty = start_runtimes(("--revision", "r2"), ("--revision", "r2", "--fault-error-rate", "0.5"))
    yield healthy, faulty
    healthy.stop()
    faulty.stop()


def endpoint_slice(name: str, revision: str, runtime) -> dict:
    return {
        "metadata": {
            "name": name,
            "namespace": "test",
            "labels": {"shoal.dev/pool": "chat", "shoal.dev/revision": revision},
        },
        "ports": [{"name": "grpc", "port": runtime.port}, {"name": "metrics", "port": runtime.metrics_port}],
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
    }


def runtime_requests(runtime) -> int:
    """Requests the runtime answered or refused, from its own /metrics."""
    with urllib.request.urlopen(runtime.metrics_url, timeout=5) as response:
        text = response.read().decode()
    wanted = ("shoal:request_success_total", "shoal:request_errors_total")
    return int(sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name in wanted))


async def send(base_url: str, n: int, concurrency: int = 16) -> list[tuple[int, str]]:
    """n short completions; (status, revision) of each."""
    body = {"model": MODEL, "prompt": "Hi", "max_tokens": 1, "temperature": 0}
    semaphore = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:

        async def one():
            async with semaphore:
                reply = await post(session, base_url + "/v1/completions", body)
                return reply.status, reply.headers.get("x-shoal-revision", "")

        return await asyncio.gather(*(one() for _ in range(n)))


def test_split_then_automatic_rollback_of_a_failing_canary(loop_thread, stable_runtime, canaries):
    healthy, faulty = canaries
    rules = [{"error_rate": {"max_rate": 0.05, "min_samples": 20, "window_s": 30}}, {"preemptions": {"max_count": 0}}]
    pool = {
        "name": "chat",
        "model": MODEL,
        "stable": "r1",
        "canary": "r2",
        "canary_weight": CANARY_WEIGHT,
        "rollback_rules": rules,
    }
    watch = loop_thread.call(InMemoryEndpointSliceWatch)
    router = RouterInThread(loop_thread, make_config([pool]), source=KubernetesEndpointSource(watch))
    try:
        loop_thread.call(watch.put, "ADDED", endpoint_slice("chat-r1", "r1", stable_runtime))
        loop_thread.call(watch.put, "ADDED", endpoint_slice("chat-r2", "r2", healthy))
        while get_json(router.admin_url + "/admin/pools/chat")[1]["qos"]["capacity"] < 32:
            time.sleep(0.05)

        # 90/10 over 1,000 requests.
        before = {r: runtime_requests(r) for r in (stable_runtime, healthy)}
        started = time.monotonic()
        replies = asyncio.run(send(router.base_url, REQUESTS))
        split_seconds = time.monotonic() - started
        assert all(status == 200 for status, _ in replies)
        served = collections.Counter(revision for _, revision in replies)
        reached = {r: runtime_requests(r) - before[r] for r in (stable_runtime, healthy)}
        mean = REQUESTS * CANARY_WEIGHT / 100
        sd = math.sqrt(REQUESTS * 0.1 * 0.9)
        low, high = mean - SIGMAS * sd, mean + SIGMAS * sd
        print(
            f"\ncanary split: {served['r2']}/{REQUESTS} to r2 (expected {mean:.0f}, 99.999% interval "
            f"[{low:.0f}, {high:.0f}]), {REQUESTS / split_seconds:.0f} req/s"
        )
        assert low <= served["r2"] <= high and served["r1"] + served["r2"] == REQUESTS
        assert reached == {stable_runtime: served["r1"], healthy: served["r2"]}

        # The canary's pod is replaced by a failing one.
        loop_thread.call(watch.put, "DELETED", endpoint_slice("chat-r2", "r2", healthy))
        loop_thread.call(watch.put, "ADDED", endpoint_slice("chat-r2-faulty", "r2", faulty))
        swapped = time.monotonic()
        verdicts, during = [], []
        while not verdicts and time.monotonic() - swapped < 60:
            during += asyncio.run(send(router.base_url, 50))
            verdicts = get_json(router.admin_url + "/admin/pools/chat/rollback")[1]["rolled_back"]
        rollback_seconds = time.monotonic() - swapped
        (verdict,) = verdicts
        failed = sum(status != 200 for status, _ in during)
        print(
            f"rolled back after {rollback_seconds:.1f}s and {len(during)} requests ({failed} failed, all on "
            f"r2): {verdict['reason']}"
        )
        assert verdict["revision"] == "r2" and verdict["rules"][0]["rule"] == "error_rate"
        assert rollback_seconds < 30
        assert get_json(router.admin_url + "/admin/pools/chat/weights")[1]["canary_weight"] == 0.0
        assert all(status == 200 for status, revision in during if revision == "r1")  # stable's clients saw no error
        assert failed > 0 and all(revision == "r2" for status, revision in during if status != 200)

        # Nothing reaches the canary afterwards.
        faulty_seen = runtime_requests(faulty)
        after = asyncio.run(send(router.base_url, 200))
        assert after == [(200, "r1")] * 200
        assert runtime_requests(faulty) == faulty_seen
        status, pools = get_json(router.admin_url + "/admin/pools/chat")
        assert pools["revisions"]["r2"]["rolled_back"]["rules"][0]["observed"]["canary_error_rate"] > 0.05
    finally:
        router.stop()
