"""The admin API and automatic rollback, with fake runtimes: weights move traffic without dropping
requests in flight, a slow canary is pulled out by the latency rule, and it stays out until reset."""

import asyncio
import collections
import dataclasses
import logging
import time

import aiohttp
import pytest

from tests.router.harness import RouterInThread, get_json, make_config, pool
from tests.router.http_client import chat, post

pytestmark = pytest.mark.integration
MODEL = "fake-model"


def two_revisions(loop_thread, start_fake, **pool_settings):
    stable, canary = start_fake(tokens=2, revision="v1"), start_fake(tokens=2, revision="v2")
    config = make_config(
        [pool("fake", {"v1": [stable], "v2": [canary]}, model=MODEL, stable="v1", canary="v2", **pool_settings)]
    )
    return RouterInThread(loop_thread, config), stable, canary


async def send(base_url: str, n: int, concurrency: int = 8, **headers) -> list:
    async with aiohttp.ClientSession() as session:
        semaphore = asyncio.Semaphore(concurrency)

        async def one(i):
            async with semaphore:
                return await post(session, base_url + "/v1/chat/completions", chat(MODEL, max_tokens=2), **headers)

        return await asyncio.gather(*(one(i) for i in range(n)))


def test_weights_are_read_and_set_and_move_traffic(loop_thread, start_fake):
    router, stable, canary = two_revisions(loop_thread, start_fake, canary_weight=0)
    try:
        assert get_json(router.admin_url + "/admin/pools/fake/weights") == (
            200,
            {"stable": "v1", "canary": "v2", "canary_weight": 0.0, "stable_weight": 100.0},
        )
        asyncio.run(send(router.base_url, 20))
        assert (stable.counters.requests, canary.counters.requests) == (20, 0)
        status, weights = get_json(
            router.admin_url + "/admin/pools/fake/weights", "PUT", {"canary": "v2", "canary_weight": 50}
        )
        assert status == 200 and weights["canary_weight"] == 50.0
        replies = asyncio.run(send(router.base_url, 200))
        served = collections.Counter(r.headers["x-shoal-revision"] for r in replies)
        assert 60 < served["v2"] < 140 and canary.counters.requests == served["v2"]
        assert get_json(router.admin_url + "/admin/pools/fake/weights", "PUT", {"canary_weight": 101})[0] == 400
        assert (
            get_json(router.admin_url + "/admin/pools/fake/weights", "PUT", {"stable": "v1", "canary": "v1"})[0] == 400
        )
        assert get_json(router.admin_url + "/admin/pools/nope/weights")[0] == 404
        status, pools = get_json(router.admin_url + "/admin/pools")
        endpoints = pools["pools"][0]["revisions"]["v2"]["endpoints"]
        assert status == 200 and endpoints[0]["target"] == canary.target
    finally:
        router.stop()


def test_a_weight_change_does_not_drop_requests_in_flight(loop_thread, start_fake):
    router, stable, canary = two_revisions(loop_thread, start_fake, canary_weight=100, sticky=False)
    canary.delay_s = 0.02  # 50 tokens: about a second

    async def main():
        async with aiohttp.ClientSession() as session:
            long = asyncio.create_task(
                post(session, router.base_url + "/v1/chat/completions", chat(MODEL, max_tokens=50))
            )
            while canary.counters.in_flight == 0:
                await asyncio.sleep(0.01)
            await asyncio.to_thread(
                get_json, router.admin_url + "/admin/pools/fake/weights", "PUT", {"canary_weight": 0}
            )
            after = await post(session, router.base_url + "/v1/chat/completions", chat(MODEL, max_tokens=2))
            return await long, after

    try:
        long, after = asyncio.run(main())
        assert (
            long.status == 200
            and long.headers["x-shoal-revision"] == "v2"
            and long.body["usage"]["completion_tokens"] == 50
        )
        assert after.headers["x-shoal-revision"] == "v1"
    finally:
        router.stop()


def test_a_slow_canary_is_rolled_back_and_stays_out_until_reset(loop_thread, start_fake):
    rules = [
        {"latency_ratio": {"metric": "ttft", "quantile": 0.5, "max_ratio": 1.5, "min_samples": 10, "window_s": 30}}
    ]
    router, stable, canary = two_revisions(loop_thread, start_fake, canary_weight=50, rollback_rules=rules)
    canary.first_delay_s = 0.1
    try:
        deadline = time.monotonic() + 20
        verdicts = []
        while not verdicts and time.monotonic() < deadline:
            asyncio.run(send(router.base_url, 20))
            verdicts = get_json(router.admin_url + "/admin/pools/fake/rollback")[1]["rolled_back"]
        (verdict,) = verdicts
        assert verdict["revision"] == "v2" and verdict["weight_before"] == 50.0
        assert (
            verdict["rules"][0]["rule"] == "latency_ratio:ttft_p50" and verdict["rules"][0]["observed"]["ratio"] > 1.5
        )
        canary_requests = canary.counters.requests
        canary.first_delay_s = 0.0  # healthy again: it must still stay out
        time.sleep(0.5)
        replies = asyncio.run(send(router.base_url, 50))
        assert all(r.status == 200 and r.headers["x-shoal-revision"] == "v1" for r in replies)
        assert canary.counters.requests == canary_requests
        status, conflict = get_json(router.admin_url + "/admin/pools/fake/weights", "PUT", {"canary_weight": 10})
        assert status == 409 and "/admin/pools/fake/revisions/v2/reset" in conflict["error"]
        metrics = asyncio.run(_text(router.admin_url + "/metrics"))
        assert 'shoal:router_rollbacks_total{pool="fake",revision="v2",rule="latency_ratio:ttft_p50"} 1.0' in metrics
        assert 'shoal:router_revision_rolled_back{pool="fake",revision="v2"} 1.0' in metrics
        assert get_json(router.admin_url + "/admin/pools/fake/revisions/v2/reset", "POST", {})[0] == 200
        assert get_json(router.admin_url + "/admin/pools/fake/weights", "PUT", {"canary_weight": 10})[0] == 200
    finally:
        router.stop()


def test_measurements_are_exposed_as_json(loop_thread, start_fake):
    router, _, _ = two_revisions(loop_thread, start_fake, canary_weight=50)
    try:
        asyncio.run(send(router.base_url, 20, **{"x-shoal-qos": "batch"}))
        status, body = get_json(router.admin_url + "/admin/measurements?window_s=30")
        assert status == 200
        by_revision = {m["revision"]: m for m in body["measurements"]}
        total = sum(m["batch"]["requests"] for m in by_revision.values())
        assert total == 20 and all(m["realtime"]["requests"] == 0 for m in by_revision.values())
        some = next(m["batch"] for m in by_revision.values() if m["batch"]["requests"])
        assert set(some["ttft_s"]) == {"samples", "p50", "p95", "p99"} and some["error_rate"] == 0.0
        assert "quiet" in get_json(router.admin_url + "/admin/tenants")[1]["tenants"]
    finally:
        router.stop()


def test_a_canary_whose_metrics_fail_keeps_its_traffic_breaks_no_rule_and_is_reported(loop_thread, start_fake):
    router, _, canary = two_revisions(loop_thread, start_fake, canary_weight=50)
    try:
        canary.metrics_status = 503
        time.sleep(1.0)  # several scrapes, at 0.2 s
        answers = asyncio.run(send(router.base_url, 40))
        by_revision = {m["revision"]: m for m in get_json(router.admin_url + "/admin/measurements")[1]["measurements"]}
        endpoints = get_json(router.admin_url + "/admin/pools/fake")[1]["revisions"]["v2"]["endpoints"]
        verdicts = get_json(router.admin_url + "/admin/pools/fake/rollback")[1]["rolled_back"]
        metrics = asyncio.run(_text(router.admin_url + "/metrics"))
    finally:
        router.stop()
    assert {m["revision"]: m["scrapes"] for m in by_revision.values()} == {
        "v1": {"endpoints": 1, "failing": 0},
        "v2": {"endpoints": 1, "failing": 1},
    }
    assert all(reply.status == 200 for reply in answers) and by_revision["v2"]["all"]["requests"] > 0
    assert [(e["ready"], e["metrics_failing"]) for e in endpoints] == [(True, True)] and verdicts == []
    assert 'shoal:router_backends_metrics_failing{pool="fake",revision="v2"} 1.0' in metrics


BAD_WINDOWS = ["soon", "", "nan", "NaN", "inf", "-inf", "Infinity", "-1", "0", "1e999", "0x10", "%FF"]


def test_a_bad_window_is_a_400_naming_it(loop_thread, start_fake):
    router, _, _ = two_revisions(loop_thread, start_fake)
    try:
        for window in BAD_WINDOWS:
            status, body = get_json(router.admin_url + "/admin/measurements?window_s=" + window)
            assert (status, body["error"].split(":")[0]) == (400, "window_s"), window
        assert get_json(router.admin_url + "/admin/measurements?window_s=0.5")[0] == 200
    finally:
        router.stop()


@pytest.mark.parametrize("body", [b'{"canary_weight": 1' + b"0" * 5000 + b"}", b'{"canary_weight": NaN}', b"\xff"])
def test_a_bad_weights_body_is_a_400(loop_thread, start_fake, body):
    router, _, _ = two_revisions(loop_thread, start_fake)
    try:

        async def put():
            async with aiohttp.ClientSession() as session:
                async with session.put(router.admin_url + "/admin/pools/fake/weights", data=body) as response:
                    return response.status

        assert asyncio.run(put()) == 400
    finally:
        router.stop()


def no_token_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "shoal.router.app" and r.levelno == logging.WARNING]


def test_an_admin_api_without_a_token_starts_on_loopback_with_one_warning(loop_thread, caplog):
    with caplog.at_level(logging.WARNING, logger="shoal.router.app"):
        RouterInThread(loop_thread, make_config([])).stop()
    (warning,) = no_token_warnings(caplog)
    assert "has no token (admin.token_file): anyone on this machine can change routes" in warning


def test_the_admin_token_is_required_when_set_and_metrics_are_on_the_admin_port_only(loop_thread, start_fake, caplog):
    """/admin/* needs the token; /metrics (it names every tenant) is on the admin port, open to
    Prometheus without the token, and the public port answers it with an OpenAI-shaped 404."""
    fake = start_fake()
    config = make_config([pool("fake", {"v1": [fake]}, model=MODEL)])
    with caplog.at_level(logging.WARNING, logger="shoal.router.app"):
        router = RouterInThread(loop_thread, dataclasses.replace(config, admin_token="s3cret"))
    assert no_token_warnings(caplog) == []
    try:
        assert get_json(router.admin_url + "/admin/pools")[0] == 401

        async def get(url: str, **headers) -> tuple[int, str]:
            async with aiohttp.ClientSession() as session:
                async with session.get(url, headers=headers) as response:
                    return response.status, await response.text()

        assert asyncio.run(get(router.admin_url + "/admin/pools", Authorization="Bearer s3cret"))[0] == 200
        assert asyncio.run(get(router.admin_url + "/admin/pools", Authorization="Bearer wrong"))[0] == 401
        status, metrics = asyncio.run(get(router.admin_url + "/metrics"))
        assert status == 200 and 'shoal:router_revision_weight_percent{pool="fake",revision="v1"} 100.0' in metrics
        status, body = get_json(router.base_url + "/metrics")
        assert status == 404 and body["error"]["type"] == "invalid_request_error"
        assert body["error"]["message"] == "Invalid URL (GET /metrics)"
    finally:
        router.stop()


async def _text(url: str) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            return await response.text()


def test_a_session_key_keeps_a_conversation_on_one_revision(loop_thread, start_fake):
    router, stable, canary = two_revisions(loop_thread, start_fake, canary_weight=50)

    async def main():
        async with aiohttp.ClientSession() as session:
            url = router.base_url + "/v1/chat/completions"
            by_header = {}
            for conversation in range(20):
                replies = [
                    await post(session, url, chat(MODEL, max_tokens=1), **{"x-session-id": f"conv-{conversation}"})
                    for _ in range(5)
                ]
                by_header[conversation] = {r.headers["x-shoal-revision"] for r in replies}
            by_user = [await post(session, url, chat(MODEL, max_tokens=1, user="ada")) for _ in range(5)]
            return by_header, {r.headers["x-shoal-revision"] for r in by_user}

    try:
        by_header, by_user = asyncio.run(main())
        assert all(len(revisions) == 1 for revisions in by_header.values()) and len(by_user) == 1
        assert {r for revisions in by_header.values() for r in revisions} == {"v1", "v2"}  # both revisions get sessions
    finally:
        router.stop()


def test_prefix_affinity_keeps_a_prompt_on_one_replica(loop_thread, start_fake):
    replicas = [start_fake(tokens=1, revision="v1") for _ in range(3)]
    config = make_config(
        [pool("fake", {"v1": replicas}, model=MODEL, prefix_affinity={"enabled": True, "prefix_chars": 64})]
    )
    router = RouterInThread(loop_thread, config)
    try:
        # Affinity hashes over the ready replicas: a request sent before every health probe has
        # answered would hash over fewer of them and may land elsewhere.
        def all_ready():
            backends = router.router.backends.backends()
            return len(backends) == 3 and all(b.ready for b in backends)

        deadline = time.monotonic() + 10
        while not loop_thread.call(all_ready):
            assert time.monotonic() < deadline, "the replicas never all became ready"
            time.sleep(0.05)
        asyncio.run(send(router.base_url, 30, concurrency=1))  # one prompt: one replica
        counts = sorted(r.counters.requests for r in replicas)
        assert counts == [0, 0, 30]
    finally:
        router.stop()
