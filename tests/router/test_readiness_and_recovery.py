"""The router in front of a fake runtime that goes away and comes back: /ready follows whether a
runtime answers its health probe, 5xx answers never name the runtime's address, and traffic is back
within 2 s of the runtime serving again, however long it was down. The pool does not hold its
requests while it has no ready runtime (cold_start off): they are refused at once, and the router
leaves its Service (test_scale_from_zero.py has the pool that holds them)."""

import asyncio
import time

import aiohttp
import grpc
import pytest

from tests.router.fake_runtime import FakeRuntime
from tests.router.harness import RouterInThread, make_config, pool
from tests.router.http_client import chat, post
from tests.router.test_routes import text

pytestmark = pytest.mark.integration
MODEL = "fake-model"
DOWN_S = 10.0  # gRPC's default reconnect backoff would be past 6 s apart by now


def ready_status(router) -> int:
    return text(router.base_url + "/ready")[0]


def wait_for(predicate, timeout_s: float, poll_s: float = 0.05) -> float:
    """Seconds until predicate() held; fails after timeout_s."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout_s, f"not within {timeout_s}s"
        time.sleep(poll_s)
    return time.monotonic() - started


def complete(router):
    async def one():
        async with aiohttp.ClientSession() as session:
            return await post(session, router.base_url + "/v1/chat/completions", chat(MODEL, max_tokens=2))

    return asyncio.run(one())


def assert_no_address(reply, fake) -> None:
    body = str(reply.body)
    assert "127.0.0.1" not in body and str(fake.port) not in body and "ipv4" not in body, body


@pytest.fixture
def router(loop_thread, start_fake):
    fake = start_fake(tokens=2)
    config = make_config([pool("fake", {"v1": [fake]}, model=MODEL, cold_start={"enabled": False})])
    router = RouterInThread(loop_thread, config)
    router.fake = fake
    wait_for(lambda: ready_status(router) == 200, timeout_s=5)
    yield router
    router.stop()


def test_ready_follows_the_runtimes_health_probe(router):
    assert text(router.base_url + "/ready") == (200, "ready")
    router.fake.serving = False  # draining, or its engine failed: it says NOT_SERVING
    wait_for(lambda: ready_status(router) == 503, timeout_s=3)
    assert text(router.base_url + "/health")[0] == 200  # alive all the same: liveness is not readiness
    router.fake.serving = True
    wait_for(lambda: ready_status(router) == 200, timeout_s=3)


def test_a_runtime_back_after_a_long_outage_gets_traffic_within_two_seconds(router, loop_thread):
    fake = router.fake
    assert complete(router).status == 200
    loop_thread.run(fake.stop())
    down_at = time.monotonic()
    wait_for(lambda: ready_status(router) == 503, timeout_s=3)  # no ready runtime: out of the Service
    refused = []
    while time.monotonic() - down_at < DOWN_S:
        refused.append(complete(router))
        time.sleep(0.5)
    assert {reply.status for reply in refused} == {503}
    for reply in refused:
        assert reply.error["code"] == "service_unavailable"
        assert_no_address(reply, fake)

    back = loop_thread.run(FakeRuntime(tokens=2).start(port=fake.port, metrics_port=fake.metrics_port))
    try:
        seconds = wait_for(lambda: complete(router).status == 200, timeout_s=10, poll_s=0.1)
        assert seconds < 2.0, f"traffic came back {seconds:.1f}s after the runtime"
        wait_for(lambda: ready_status(router) == 200, timeout_s=2)
    finally:
        loop_thread.run(back.stop())


@pytest.mark.parametrize(
    ("code", "status"),
    [(grpc.StatusCode.UNAVAILABLE, 503), (grpc.StatusCode.INTERNAL, 500), (grpc.StatusCode.UNKNOWN, 500)],
)
def test_5xx_bodies_do_not_show_what_grpc_said_about_addresses(router, code, status):
    fake = router.fake
    fake.error = code
    fake.error_message = f"failed to connect to all addresses; last error: ipv4:127.0.0.1:{fake.port}: refused"
    reply = complete(router)
    assert reply.status == status
    assert_no_address(reply, fake)
