"""Scale from zero, the router's side, against fake runtimes: a pool with no ready runtime keeps its
route and the router stays Ready; its requests, streamed or not, wait and are answered once a runtime
is ready (its health probe turns SERVING, or the operator pushes its first endpoint); a request that
waits past the pool's cold_start.max_wait_s gets a 503 with Retry-After (gRPC: UNAVAILABLE with a
retry-after trailer); a full hold refuses at once; a client that leaves is no longer held; the wait
is the client's latency, not the revision's that answers (a canary is not rolled back for it). The
admin API's /load reports what the operator sizes the pool from."""

import asyncio
import contextlib
import time

import aiohttp
import grpc
import pytest

from shoal.pool_load import PoolLoad
from shoal.router.traffic.hold import TIMED_OUT_RETRY_AFTER_S
from shoal.v1 import router_pb2 as rpb
from shoal.v1 import router_pb2_grpc
from shoal.v1 import runtime_pb2 as pb
from tests.router.harness import RouterInThread, get_json, make_config, pool
from tests.router.http_client import chat, post, stream
from tests.router.test_routes import put_route, text

pytestmark = pytest.mark.integration
MODEL = "fake-model"
FAST_PROBES = {"health_interval_s": 0.1}  # a runtime that turns SERVING is found within 0.1 s


@pytest.fixture
def routers(loop_thread):
    """Starts routers with one pool `fake` (runtimes per revision, pool settings); stops them after."""
    started = []

    def start(revisions: dict, **settings) -> RouterInThread:
        router = RouterInThread(
            loop_thread, make_config([pool("fake", revisions, model=MODEL, **settings)], **FAST_PROBES)
        )
        started.append(router)
        return router

    yield start
    for router in started:
        router.stop()


def load(router, name: str = "fake", **query) -> tuple[int, dict]:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return get_json(f"{router.admin_url}/admin/pools/{name}/load" + (f"?{params}" if params else ""))


async def eventually(fetch, predicate, timeout_s: float = 4.0):
    """fetch() (blocking, run in a thread) until predicate(its value) holds; returns that value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await asyncio.to_thread(fetch)
        if predicate(value):
            return value
        assert time.monotonic() < deadline, f"not within {timeout_s}s: last {value}"
        await asyncio.sleep(0.02)


async def held(router, count: int) -> dict:
    """The pool's load once it holds `count` requests."""
    return (await eventually(lambda: load(router), lambda reply: reply[1]["held_requests"] == count))[1]


def completions(router) -> str:
    return router.base_url + "/v1/chat/completions"


def test_requests_wait_for_a_runtime_to_become_ready_then_are_answered(routers, start_fake):
    fake = start_fake(tokens=3)
    fake.serving = False  # starting: its health probe answers NOT_SERVING
    router = routers({"v1": [fake]})
    assert text(router.base_url + "/ready") == (200, "ready")  # holding: the request that wakes it must get in

    async def main():
        async with aiohttp.ClientSession() as session:
            plain = asyncio.create_task(post(session, completions(router), chat(MODEL)))
            await held(router, 1)
            streamed = asyncio.create_task(stream(session, completions(router), chat(MODEL, stream=True)))
            waiting = await held(router, 2)
            await asyncio.sleep(0.3)  # three health probes: still NOT_SERVING, so still held
            assert not plain.done() and not streamed.done() and fake.counters.requests == 0
            fake.serving = True
            return await plain, await streamed, waiting, load(router)[1]

    plain, (status, _, events), waiting, after = asyncio.run(main())
    assert plain.status == 200 and plain.body["usage"]["completion_tokens"] == 3
    assert status == 200 and events[-1] == "[DONE]" and fake.counters.finished == 2
    assert waiting["replicas"] == 1 and waiting["ready_replicas"] == 0 and waiting["oldest_held_s"] > 0
    assert after["held_requests"] == 0 and after["oldest_held_s"] == 0.0 and after["ready_replicas"] == 1


def test_a_pool_at_zero_keeps_its_route_and_wakes_on_its_first_endpoint(routers, start_fake):
    router = routers({"v1": []})  # scaled to zero: the route lists no runtime
    fake = start_fake(tokens=2)
    assert text(router.base_url + "/ready")[0] == 200

    async def main():
        async with aiohttp.ClientSession() as session:
            request = asyncio.create_task(post(session, completions(router), chat(MODEL)))
            zero = await held(router, 1)
            pushed = await asyncio.to_thread(put_route, router, "fake", pool("fake", {"v1": [fake]}, model=MODEL))
            return await request, zero, pushed

    reply, zero, (status, _) = asyncio.run(main())
    assert zero["replicas"] == 0 and status == 200
    assert reply.status == 200 and reply.headers["x-shoal-revision"] == "v1" and fake.counters.finished == 1


def test_a_request_held_past_max_wait_s_gets_503_with_retry_after(routers, start_fake):
    fake = start_fake()
    fake.serving = False
    router = routers({"v1": [fake]}, cold_start={"max_wait_s": 0.3})

    async def main():
        async with aiohttp.ClientSession() as session:
            started = time.monotonic()
            reply = await post(session, completions(router), chat(MODEL))
            seconds = time.monotonic() - started
        async with grpc.aio.insecure_channel(router.grpc_target) as channel:
            message = rpb.InferenceRequest(
                model=MODEL, chat=pb.ChatMessages(messages=[pb.ChatMessage(role="user", content="Hi")])
            )
            call = router_pb2_grpc.InferenceStub(channel).Generate(
                message, metadata=(("authorization", "Bearer sk-test-quiet"),)
            )
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                [r async for r in call]
            trailers = dict(await call.trailing_metadata())
        return reply, seconds, failed.value, trailers

    reply, seconds, failed, trailers = asyncio.run(main())
    assert reply.status == 503 and 0.3 <= seconds < 3
    assert reply.headers["Retry-After"] == str(TIMED_OUT_RETRY_AFTER_S)
    assert set(reply.error) == {"message", "type", "param", "code"} and reply.error["code"] == "service_unavailable"
    assert "became ready within 0.3s" in reply.error["message"] and "127.0.0.1" not in reply.error["message"]
    assert failed.code() == grpc.StatusCode.UNAVAILABLE and trailers["retry-after"] == str(TIMED_OUT_RETRY_AFTER_S)
    metrics = text(router.admin_url + "/metrics")[1]
    assert 'shoal:router_hold_timeouts_total{pool="fake"} 2.0' in metrics
    assert 'shoal:router_held_requests{pool="fake"} 0.0' in metrics
    assert fake.counters.requests == 0


def test_a_full_hold_answers_at_once_and_the_held_request_still_gets_through(routers, start_fake):
    fake = start_fake(tokens=2)
    fake.serving = False
    router = routers({"v1": [fake]}, cold_start={"max_queued": 1, "max_wait_s": 30})

    async def main():
        async with aiohttp.ClientSession() as session:
            first = asyncio.create_task(post(session, completions(router), chat(MODEL)))
            await held(router, 1)
            started = time.monotonic()
            refused = await post(session, completions(router), chat(MODEL))
            seconds = time.monotonic() - started
            fake.serving = True
            return await first, refused, seconds

    first, refused, seconds = asyncio.run(main())
    assert refused.status == 429 and seconds < 1 and refused.error["code"] == "overloaded"
    assert 1 <= int(refused.headers["Retry-After"]) <= 30  # when the held one leaves at the latest
    assert first.status == 200 and fake.counters.requests == 1


def test_a_client_that_leaves_while_held_is_no_longer_held(routers, start_fake):
    fake = start_fake(tokens=2)
    fake.serving = False
    router = routers({"v1": [fake]})

    async def main():
        async with aiohttp.ClientSession() as session:
            leaving = asyncio.create_task(post(session, completions(router), chat(MODEL)))
            await held(router, 1)
            leaving.cancel()  # the connection closes, the router cancels the request's handler
            with contextlib.suppress(asyncio.CancelledError):
                await leaving
        await held(router, 0)
        metrics = await asyncio.to_thread(text, router.admin_url + "/metrics")
        fake.serving = True
        async with aiohttp.ClientSession() as session:
            later = await post(session, completions(router), chat(MODEL))
        return metrics[1], later

    metrics, later = asyncio.run(main())
    assert 'shoal:router_held_requests{pool="fake"} 0.0' in metrics
    assert 'status="499"' in metrics  # counted as a client that left
    assert later.status == 200 and fake.counters.requests == 1  # the one that left never reached it


def test_a_held_requests_wait_is_its_clients_latency_not_the_canarys(routers, start_fake):
    """The request that waited for the pool's first ready runtime goes to a canary: its wait shows in
    the router's histograms (the client's latency) but not in the windows the rollback rules judge,
    so a canary that answers at once is not rolled back on latency for it."""
    stable, canary = start_fake(tokens=2), start_fake(tokens=2)
    stable.serving = canary.serving = False  # the route has just come: no probe has answered yet
    rule = {"latency_ratio": {"metric": "e2e", "quantile": 0.99, "min_difference_s": 0.3, "min_samples": 3}}
    router = routers(
        {"v1": [stable], "v2": [canary]}, stable="v1", canary="v2", canary_weight=100, rollback_rules=[rule]
    )
    held_s = 1.0

    async def main():
        async with aiohttp.ClientSession() as session:
            request = asyncio.create_task(post(session, completions(router), chat(MODEL)))
            await held(router, 1)
            await asyncio.sleep(held_s)
            canary.serving = True  # the canary's runtime is found first: the held request goes there
            first = await request
            stable.serving = True
            await eventually(lambda: load(router), lambda reply: reply[1]["ready_replicas"] == 2)
            weights = f"{router.admin_url}/admin/pools/fake/weights"
            assert (await asyncio.to_thread(get_json, weights, "PUT", {"canary_weight": 50}))[0] == 200
            rest = [await post(session, completions(router), chat(MODEL)) for _ in range(40)]
        await asyncio.sleep(0.5)  # control passes every 0.1 s: the rules have judged what came
        return first, rest

    first, rest = asyncio.run(main())
    measured = {m["revision"]: m["all"] for m in get_json(router.admin_url + "/admin/measurements")[1]["measurements"]}
    verdicts = get_json(router.admin_url + "/admin/pools/fake/rollback")[1]["rolled_back"]
    metrics = text(router.admin_url + "/metrics")[1]
    assert first.status == 200 and first.headers["x-shoal-revision"] == "v2"
    assert all(reply.status == 200 for reply in rest)
    assert all(m["e2e_s"]["samples"] >= 3 for m in measured.values())  # enough for the rule to judge
    assert verdicts == []
    assert measured["v2"]["e2e_s"]["p99"] < held_s / 2 and measured["v2"]["ttft_s"]["p99"] < held_s / 2
    client_e2e = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("shoal:router_e2e_request_latency_seconds_sum{") and 'revision="v2"' in line
    ]
    assert sum(client_e2e) >= held_s


def test_the_load_endpoint_reports_replicas_runtime_queues_and_window(routers, start_fake):
    busy, idle = start_fake(tokens=2, delay_s=0.5), start_fake(tokens=2)
    busy.waiting, busy.kv_usage = 3, 0.5
    idle.waiting, idle.kv_usage = 1, 0.25
    router = routers({"v1": [busy], "v2": [idle]}, stable="v1", canary="v2", canary_weight=0)

    async def main():
        scraped = await eventually(  # probed and scraped: the two run apart
            lambda: load(router), lambda r: r[1]["ready_replicas"] == 2 and r[1]["waiting_requests"] == 4
        )
        async with aiohttp.ClientSession() as session:
            slow = asyncio.create_task(post(session, completions(router), chat(MODEL)))
            running = await eventually(lambda: load(router), lambda r: r[1]["running_requests"] == 1)
            await slow
        return scraped[1], running[1], load(router, window_s=30)

    before, running, (status, after) = asyncio.run(main())
    assert before == {
        "pool": "fake",
        "ready_replicas": 2,
        "replicas": 2,
        "held_requests": 0,
        "oldest_held_s": 0.0,
        "waiting_requests": 4,
        "running_requests": 0,
        "kv_cache_usage": 0.375,  # the mean of the ready runtimes'
        "ttft_p95_s": None,  # nothing answered yet
        "requests": 0,
        "window_s": 60.0,
    }
    assert running["running_requests"] == 1 and busy.counters.requests == 1
    assert status == 200 and after["requests"] == 1 and after["window_s"] == 30.0
    assert 0.0 <= after["ttft_p95_s"] < 0.5  # the first token comes at once, the rest 0.5 s apart
    assert PoolLoad.from_json(after).to_json() == after
    assert load(router, "nope")[0] == 404
    assert load(router, window_s="soon")[0] == 400
