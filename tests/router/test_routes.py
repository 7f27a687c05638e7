"""Routes pushed through the admin API (PUT and DELETE /admin/pools/{pool}/route), against a router
on real ports in front of fake runtimes: pools come and go and change in place, requests in flight
finish where they are, verdicts survive the operator's repeated pushes, per-pool tenant limits hold,
and a router that starts with no pools is ready (nothing to wait for), takes routes on its admin
port, is unready while a pushed pool that does not hold its requests (cold_start off) has no runtime
answering its health probe, and ready again once one does."""

import asyncio
import json
import time
import urllib.error
import urllib.request

import aiohttp
import grpc
import pytest

from tests.router.harness import RouterInThread, get_json, make_config, pool
from tests.router.http_client import chat, post

pytestmark = pytest.mark.integration
MODEL = "fake-model"
FAILING_CANARY_RULES = [{"error_rate": {"max_rate": 0.1, "min_samples": 5, "window_s": 30}}]


def put_route(router, name: str, body) -> tuple[int, dict]:
    return get_json(f"{router.admin_url}/admin/pools/{name}/route", "PUT", body)


def delete_route(router, name: str) -> tuple[int, dict]:
    return get_json(f"{router.admin_url}/admin/pools/{name}/route", "DELETE")


def complete(router, model: str = MODEL, key: str = "sk-test-quiet", max_tokens: int = 2):
    async def one():
        async with aiohttp.ClientSession() as session:
            return await post(
                session, router.base_url + "/v1/chat/completions", chat(model, max_tokens=max_tokens), key
            )

    return asyncio.run(one())


def text(url: str, **headers: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def while_in_flight(fake, router, action, model: str = MODEL, key: str = "sk-test-quiet"):
    """Starts a long request on `fake`, runs `action` (blocking: admin calls) while it streams there,
    then one more request; returns (the long reply, action's result, the later reply)."""
    async with aiohttp.ClientSession() as session:
        url = router.base_url + "/v1/chat/completions"
        long = asyncio.create_task(post(session, url, chat(model, max_tokens=40), key))
        while fake.counters.in_flight == 0:
            await asyncio.sleep(0.01)
        done = await asyncio.to_thread(action)
        later = await post(session, url, chat(model, max_tokens=2), key)
        return await long, done, later


@pytest.fixture
def empty_router(loop_thread):
    router = RouterInThread(loop_thread, make_config([]))
    yield router
    router.stop()


def wait_ready_status(router, status: int, timeout_s: float = 5.0) -> str:
    """Polls /ready until it answers `status` (the health prober runs every second); returns its text."""
    deadline = time.monotonic() + timeout_s
    while True:
        answered, body = text(router.base_url + "/ready")
        if answered == status or time.monotonic() > deadline:
            assert answered == status, body
            return body
        time.sleep(0.05)


def test_a_router_without_pools_is_ready_and_with_one_only_once_a_runtime_serves(empty_router, start_fake):
    router = empty_router
    fake = start_fake(tokens=2)
    assert text(router.base_url + "/ready") == (200, "ready (no pools)")  # a fresh release: nothing to wait for
    assert text(router.base_url + "/health")[0] == 200
    assert asyncio.run(_get(router.base_url + "/v1/models"))["data"] == []
    assert complete(router).status == 404
    no_hold = {"enabled": False}  # a pool that holds its requests keeps the router ready (test_scale_from_zero.py)
    status, described = put_route(router, "fake", pool("fake", {"v1": []}, model=MODEL, cold_start=no_hold))
    assert status == 200 and described["name"] == "fake" and described["weights"]["stable"] == "v1"
    assert text(router.base_url + "/ready")[0] == 503  # a pool, but nowhere to send its requests yet
    status, described = put_route(router, "fake", pool("fake", {"v1": [fake]}, model=MODEL, cold_start=no_hold))
    assert status == 200 and described["revisions"]["v1"]["endpoints"][0]["target"] == fake.target
    assert wait_ready_status(router, 200) == "ready"
    reply = complete(router)
    assert reply.status == 200 and reply.headers["x-shoal-revision"] == "v1" and fake.counters.finished == 1
    fake.serving = False
    assert wait_ready_status(router, 503) == "no pool has a ready runtime"
    assert delete_route(router, "fake")[0] == 200
    assert text(router.base_url + "/ready")[0] == 200  # no pools at all again


def test_a_pushed_pool_is_listed_measured_and_described(empty_router, start_fake):
    router = empty_router
    fake = start_fake(tokens=2)
    rules = [{"preemptions": {"window_s": 900}}]  # longer than the router kept at start
    assert put_route(router, "fake", pool("fake", {"v1": [fake]}, model=MODEL, rollback_rules=rules))[0] == 200
    models = asyncio.run(_get(router.base_url + "/v1/models"))
    assert [m["id"] for m in models["data"]] == [MODEL]
    assert complete(router).status == 200
    status, metrics = text(router.admin_url + "/metrics")
    assert 'shoal:router_revision_weight_percent{pool="fake",revision="v1"} 100.0' in metrics
    assert (
        'shoal:router_requests_total{pool="fake",qos_class="realtime",revision="v1",status="200",tenant="quiet"} 1.0'
        in metrics
    )
    assert router.router.measurements.retention_s >= 900
    status, described = put_route(router, "fake", pool("fake", {"v1": [fake]}, model=MODEL, rollback_rules=rules))
    assert status == 200 and described.keys() == get_json(router.admin_url + "/admin/pools/fake")[1].keys()


def test_a_new_route_moves_traffic_and_the_request_in_flight_finishes_on_the_old_endpoint(loop_thread, start_fake):
    old, new = start_fake(tokens=2, delay_s=0.02), start_fake(tokens=2)
    router = RouterInThread(loop_thread, make_config([]))
    try:
        assert put_route(router, "fake", pool("fake", {"v1": [old]}, model=MODEL))[0] == 200
        long, (status, described), later = asyncio.run(
            while_in_flight(old, router, lambda: put_route(router, "fake", pool("fake", {"v1": [new]}, model=MODEL)))
        )
        assert status == 200 and [e["target"] for e in described["revisions"]["v1"]["endpoints"]] == [new.target]
        assert long.status == 200 and long.body["usage"]["completion_tokens"] == 40 and old.counters.finished == 1
        assert later.status == 200 and new.counters.finished == 1 and old.counters.requests == 1
        assert all(b.endpoint.target == new.target for b in loop_thread.call(router.router.backends.backends))
    finally:
        router.stop()


def scraped_measurements(router, timeout_s: float = 10.0) -> dict:
    """The measurements once every revision has been scraped: a first scrape changes them by itself."""
    deadline = time.monotonic() + timeout_s
    while True:
        measured = get_json(router.admin_url + "/admin/measurements")[1]
        if all(m["all"]["kv_free"] is not None for m in measured["measurements"]) or time.monotonic() > deadline:
            return measured
        time.sleep(0.05)


def test_the_same_route_again_changes_nothing(loop_thread, start_fake):
    stable, canary = start_fake(tokens=2), start_fake(tokens=2)
    router = RouterInThread(loop_thread, make_config([]))
    route = pool("fake", {"v1": [stable], "v2": [canary]}, model=MODEL, canary="v2", canary_weight=50)
    try:
        assert put_route(router, "fake", route)[0] == 200
        for _ in range(20):
            assert complete(router).status == 200
        channels = {b.endpoint: b.channel for b in loop_thread.call(router.router.backends.backends)}
        measured = scraped_measurements(router)
        for _ in range(3):
            assert put_route(router, "fake", route)[0] == 200
        assert {b.endpoint: b.channel for b in loop_thread.call(router.router.backends.backends)} == channels
        assert get_json(router.admin_url + "/admin/measurements")[1] == measured
    finally:
        router.stop()


def test_a_repeated_route_cannot_undo_a_rollback_until_the_revision_is_reset(loop_thread, start_fake):
    stable, canary, spare = start_fake(tokens=2), start_fake(tokens=2), start_fake(tokens=2)
    canary.error = grpc.StatusCode.INTERNAL
    router = RouterInThread(loop_thread, make_config([]))
    route = pool(
        "fake",
        {"v1": [stable], "v2": [canary]},
        model=MODEL,
        canary="v2",
        canary_weight=50,
        sticky=False,
        rollback_rules=FAILING_CANARY_RULES,
    )
    try:
        assert put_route(router, "fake", route)[0] == 200
        for _ in range(100):
            complete(router)
            verdicts = get_json(router.admin_url + "/admin/pools/fake/rollback")[1]["rolled_back"]
            if verdicts:
                break
        assert [v["revision"] for v in verdicts] == ["v2"]
        before = get_json(router.admin_url + "/admin/pools/fake")[1]
        # The operator's next push still asks for 50% on v2 (and moves stable to another runtime).
        pushed = pool(
            "fake",
            {"v1": [spare], "v2": [canary]},
            model=MODEL,
            canary="v2",
            canary_weight=50,
            sticky=False,
            rollback_rules=FAILING_CANARY_RULES,
        )
        status, conflict = put_route(router, "fake", pushed)
        assert (
            status == 409
            and "'v2' was rolled back" in conflict["error"]
            and "/admin/pools/fake/revisions/v2/reset" in conflict["error"]
        )
        after = get_json(router.admin_url + "/admin/pools/fake")[1]
        assert after["weights"] == before["weights"] and after["weights"]["canary_weight"] == 0.0
        assert after["revisions"]["v1"]["endpoints"][0]["target"] == stable.target  # not even the endpoints moved
        assert after["revisions"]["v2"]["rolled_back"] == before["revisions"]["v2"]["rolled_back"] is not None
        # The route the operator sends once it has seen the verdict: accepted, verdict kept.
        status, described = put_route(router, "fake", {**pushed, "canary_weight": 0})
        assert status == 200 and described["revisions"]["v2"]["rolled_back"] == before["revisions"]["v2"]["rolled_back"]
        assert described["revisions"]["v1"]["endpoints"][0]["target"] == spare.target
        canary.error = None
        assert get_json(router.admin_url + "/admin/pools/fake/revisions/v2/reset", "POST", {})[0] == 200
        status, described = put_route(router, "fake", pushed)
        assert (
            status == 200
            and described["weights"]["canary_weight"] == 50.0
            and described["revisions"]["v2"]["rolled_back"] is None
        )
    finally:
        router.stop()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"canary_weight": "ten"}, "canary_weight: must be float"),
        ({"colour": "blue"}, "colour: unknown field"),
        ({"name": "other"}, "name: must be 'fake', the pool in the path"),
        (
            {"revisions": {"v1": {"endpoints": [{"target": "nohost"}]}}},
            "revisions.v1.endpoints[0].target: must be host:port",
        ),
        ({"tenants": [{"name": "quiet", "default_qos": "batch"}]}, "tenants[0].default_qos: unknown field"),
    ],
)
def test_a_bad_route_is_a_400_naming_the_field_and_changes_nothing(empty_router, body, message):
    status, error = put_route(empty_router, "fake", {**pool("fake", {"v1": []}, model=MODEL), **body})
    assert status == 400 and error["error"].startswith(message), error
    assert get_json(empty_router.admin_url + "/admin/pools")[1]["pools"] == []


def test_a_body_that_is_not_a_json_object_is_a_400(empty_router):
    for data in (b"{not json", b"[1, 2]"):
        request = urllib.request.Request(empty_router.admin_url + "/admin/pools/fake/route", data=data, method="PUT")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 400 and "JSON" in json.loads(refused.value.read())["error"]


def test_a_model_another_pool_serves_is_a_409(empty_router, start_fake):
    fake = start_fake()
    assert put_route(empty_router, "a", pool("a", {"v1": [fake]}, model=MODEL))[0] == 200
    status, error = put_route(empty_router, "b", pool("b", {"v1": [fake]}, model=MODEL))
    assert status == 409 and "served by pool 'a'" in error["error"]
    assert (
        put_route(empty_router, "a", pool("a", {"v1": [fake]}, model="renamed"))[0] == 200
    )  # a pool may rename its model
    assert complete(empty_router, "renamed").status == 200 and complete(empty_router, MODEL).status == 404


def test_a_deleted_pool_is_gone_for_new_requests_and_finishes_those_in_flight(loop_thread, start_fake):
    fake = start_fake(tokens=2, delay_s=0.02)
    router = RouterInThread(loop_thread, make_config([pool("fake", {"v1": [fake]}, model=MODEL)]))  # a config-file pool
    try:
        long, (status, _), later = asyncio.run(while_in_flight(fake, router, lambda: delete_route(router, "fake")))
        assert status == 200
        assert long.status == 200 and long.body["usage"]["completion_tokens"] == 40
        assert later.status == 404 and later.error["code"] == "model_not_found"
        assert loop_thread.call(router.router.backends.backends) == []  # its endpoints are retired
        assert asyncio.run(_get(router.base_url + "/v1/models"))["data"] == []
        assert delete_route(router, "fake")[0] == 404
        assert delete_route(router, "never")[0] == 404
    finally:
        router.stop()


def test_a_pool_limit_on_a_tenant_holds_where_the_router_wide_one_would_not(loop_thread, start_fake):
    limited, free = start_fake(tokens=2, delay_s=0.02), start_fake(tokens=2)
    router = RouterInThread(loop_thread, make_config([]))  # the tenant `quiet` has no router-wide limits
    try:
        # `ghost` is no tenant of this router (the ModelPool's owner named it): accepted, and moot.
        route = pool(
            "fake",
            {"v1": [limited]},
            model=MODEL,
            tenants=[{"name": "quiet", "max_concurrent": 1}, {"name": "ghost", "max_concurrent": 1}],
        )
        assert put_route(router, "fake", route)[0] == 200
        assert put_route(router, "other", pool("other", {"v1": [free]}, model="other-model"))[0] == 200
        long, other, refused = asyncio.run(while_in_flight(limited, router, lambda: complete(router, "other-model")))
        assert long.status == 200 and other.status == 200  # the limit is on this pool only
        assert (
            refused.status == 429
            and refused.error["type"] == "requests"
            and refused.error["code"] == "rate_limit_exceeded"
        )
        assert "pool fake" in refused.error["message"] and int(refused.headers["retry-after"]) >= 1
        assert (
            refused.headers["x-ratelimit-limit-requests"] == "1"
            and refused.headers["x-ratelimit-remaining-requests"] == "0"
        )
        assert complete(router).status == 200  # its one request is done: room again
        tenants = get_json(router.admin_url + "/admin/pools/fake")[1]["tenants"]
        assert tenants["quiet"] == {
            "in_flight": 0,
            "limit_requests": 1,
            "remaining_requests": 1,
            "limit_tokens": None,
            "remaining_tokens": None,
            "reset_tokens_s": None,
        }
        assert set(tenants) == {"quiet", "ghost"}
    finally:
        router.stop()


async def _get(url: str) -> dict:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers={"Authorization": "Bearer sk-test-quiet"}) as response:
            return await response.json()
