"""Realtime and batch apart, the router's side: two pools of one model, one taking realtime requests
and one batch (their routes' qos_classes), each in front of its own fake runtime. Each request lands
on its class's pool, however it names its class (the tenant's default, the x-shoal-qos header,
service_tier, gRPC's qos_class, a realtime session's qos_class); the model is listed once; metrics
and the load the operator sizes each pool from stay per pool; the batch pool gives batch all its
concurrency; a route that takes a class another pool of the model takes is a 409 naming it; and with
one pool of the model left, it answers the other class too."""

import asyncio
import json

import aiohttp
import grpc
import pytest

from shoal.v1 import router_pb2 as rpb
from shoal.v1 import router_pb2_grpc
from shoal.v1 import runtime_pb2 as pb
from tests.router.harness import RouterInThread, get_json, make_config, pool
from tests.router.http_client import chat, post
from tests.router.realtime_clients import connected
from tests.router.test_routes import delete_route, put_route, text

pytestmark = pytest.mark.integration
MODEL = "llama"
BATCH_PRIORITY = 1  # the default route's qos.batch_priority: batch reaches the runtime at it, realtime at 0


@pytest.fixture
def apart(loop_thread, start_fake):
    """A router with pool `interactive` (realtime) and pool `bulk` (batch) of MODEL, and their runtimes."""
    realtime, batch = start_fake(tokens=2), start_fake(tokens=2)
    pools = [
        pool("interactive", {"v1": [realtime]}, model=MODEL, qos_classes=["realtime"]),
        pool("bulk", {"v1": [batch]}, model=MODEL, qos_classes=["batch"]),
    ]
    router = RouterInThread(loop_thread, make_config(pools))
    yield router, realtime, batch
    router.stop()


def complete(router, key: str = "sk-test-quiet", **extra) -> None:
    """A chat completion of MODEL, answered 200; `headers` go on the request, the rest into its body."""
    headers = extra.pop("headers", {})

    async def one():
        async with aiohttp.ClientSession() as session:
            url = router.base_url + "/v1/chat/completions"
            return await post(session, url, chat(MODEL, max_tokens=2, **extra), key, **headers)

    reply = asyncio.run(one())
    assert reply.status == 200, reply.body


def generate_over_grpc(router, qos_class: int) -> None:
    async def one():
        async with grpc.aio.insecure_channel(router.grpc_target) as channel:
            message = rpb.InferenceRequest(
                model=MODEL,
                chat=pb.ChatMessages(messages=[pb.ChatMessage(role="user", content="Hi")]),
                qos_class=qos_class,
            )
            call = router_pb2_grpc.InferenceStub(channel).Generate(
                message, metadata=(("authorization", "Bearer sk-test-quiet"),)
            )
            return [reply async for reply in call]

    assert asyncio.run(one())[-1].finish_reason == pb.FINISH_REASON_LENGTH


def test_each_class_lands_on_its_own_pool_however_the_request_names_it(apart):
    router, realtime, batch = apart
    complete(router)  # the quiet tenant's default: realtime
    complete(router, service_tier="priority")
    generate_over_grpc(router, rpb.QOS_CLASS_REALTIME)
    assert (realtime.counters.requests, batch.counters.requests) == (3, 0)
    complete(router, key="sk-test-batch")  # the batchy tenant's default: batch
    complete(router, headers={"x-shoal-qos": "batch"})
    complete(router, service_tier="flex")
    complete(router, priority=5)
    generate_over_grpc(router, rpb.QOS_CLASS_BATCH)
    assert (realtime.counters.requests, batch.counters.requests) == (3, 5)
    assert set(realtime.counters.priorities) == {0} and set(batch.counters.priorities) == {BATCH_PRIORITY}


def test_a_realtime_session_sends_each_response_to_the_pool_of_its_class(apart):
    router, realtime, batch = apart

    async def two_responses(client):
        await client.say("Hi")
        for qos_class in ("realtime", "batch"):
            await client.send("response.create", response={"qos_class": qos_class, "max_output_tokens": 2})
            done, _ = await client.until("response.done")
            assert done["response"]["status"] == "incomplete", done  # cut at max_output_tokens, as asked

    asyncio.run(connected(router.base_url, MODEL, two_responses))
    assert (realtime.counters.requests, batch.counters.requests) == (1, 1)


def test_the_model_is_listed_once(apart):
    router, _, _ = apart
    status, models = text(router.base_url + "/v1/models", Authorization="Bearer sk-test-quiet")
    assert status == 200 and [m["id"] for m in json.loads(models)["data"]] == [MODEL]
    assert text(router.base_url + f"/v1/models/{MODEL}", Authorization="Bearer sk-test-quiet")[0] == 200

    async def listed():
        async with grpc.aio.insecure_channel(router.grpc_target) as channel:
            stub = router_pb2_grpc.InferenceStub(channel)
            return await stub.ListModels(rpb.ListModelsRequest(), metadata=(("authorization", "Bearer sk-test-quiet"),))

    assert list(asyncio.run(listed()).models) == [MODEL]


def test_metrics_load_and_concurrency_stay_per_pool(apart):
    router, _, _ = apart
    complete(router)
    complete(router, headers={"x-shoal-qos": "batch"})
    complete(router, headers={"x-shoal-qos": "batch"})
    _, metrics = text(router.admin_url + "/metrics")
    for pool_name, qos_class, count in [("interactive", "realtime", 1), ("bulk", "batch", 2)]:
        labels = f'pool="{pool_name}",qos_class="{qos_class}",revision="v1",status="200",tenant="quiet"'
        assert f"shoal:router_requests_total{{{labels}}} {count}.0" in metrics
    assert get_json(router.admin_url + "/admin/pools/interactive/load")[1]["requests"] == 1
    assert get_json(router.admin_url + "/admin/pools/bulk/load")[1]["requests"] == 2
    # The batch pool has no realtime latency to protect: batch may take all of its concurrency.
    bulk = get_json(router.admin_url + "/admin/pools/bulk")[1]["qos"]
    assert bulk["batch_share"] == 1.0 and bulk["batch_limit"] == bulk["capacity"] == 16
    interactive = get_json(router.admin_url + "/admin/pools/interactive")[1]["qos"]
    assert interactive["batch_share"] == 0.5 and interactive["batch_limit"] == 8


def test_a_route_taking_a_class_another_pool_of_the_model_takes_is_a_409_and_changes_nothing(apart, start_fake):
    router, realtime, batch = apart
    spare = start_fake(tokens=2)
    status, error = put_route(router, "spare", pool("spare", {"v1": [spare]}, model=MODEL))
    assert status == 409 and error["error"] == (
        "model 'llama' is served by pool 'interactive' for realtime requests (its qos_classes: realtime): "
        "pools of one model take different QoS classes"
    )
    status, error = put_route(router, "interactive", pool("interactive", {"v1": [realtime]}, model=MODEL))
    assert status == 409 and "served by pool 'bulk' for batch requests" in error["error"]
    pools = get_json(router.admin_url + "/admin/pools")[1]["pools"]
    assert [p["name"] for p in pools] == ["interactive", "bulk"]
    complete(router)
    assert (realtime.counters.requests, batch.counters.requests, spare.counters.requests) == (1, 0, 0)
    # A pool may hand its class over: the batch pool takes both once the realtime pool is gone.
    assert delete_route(router, "interactive")[0] == 200
    assert put_route(router, "bulk", pool("bulk", {"v1": [batch]}, model=MODEL))[0] == 200
    complete(router)
    assert batch.counters.requests == 1


def test_the_only_pool_of_a_model_answers_a_class_it_does_not_take(apart):
    router, realtime, batch = apart
    assert delete_route(router, "interactive")[0] == 200
    complete(router)  # realtime, with the realtime pool gone: the batch pool answers rather than a 404
    assert (realtime.counters.requests, batch.counters.requests) == (0, 1)
    assert batch.counters.priorities == [0]  # still realtime there: first in its queue and the runtime's
    assert delete_route(router, "bulk")[0] == 200
    status, _ = text(router.base_url + f"/v1/models/{MODEL}", Authorization="Bearer sk-test-quiet")
    assert status == 404
