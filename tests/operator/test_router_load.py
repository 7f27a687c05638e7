"""The pool's load as the operator reads it from every router replica (GET .../load): the router's
JSON read as it is, the replicas' figures combined, and the replicas that do not answer left out
and named."""

import pytest
from aiohttp import web

from shoal.fields import FieldError
from shoal.operator.router_client import RouterClient, combined_load
from shoal.pool_load import PoolLoad
from tests.support.control_plane import free_port


def body(**figures) -> dict:
    """The router's answer, every field of it."""
    return {
        "pool": "team-a.chat",
        "ready_replicas": 3,
        "replicas": 4,
        "held_requests": 0,
        "oldest_held_s": 0.0,
        "waiting_requests": 5,
        "running_requests": 12,
        "kv_cache_usage": 0.42,
        "ttft_p95_s": 0.31,
        "requests": 250,
        "window_s": 60.0,
        **figures,
    }


def test_the_routers_json_is_read_field_by_field():
    assert PoolLoad.from_json(body(ttft_p95_s=None, newer_figure=1)) == PoolLoad(
        pool="team-a.chat",
        ready_replicas=3,
        replicas=4,
        held_requests=0,
        oldest_held_s=0.0,
        waiting_requests=5,
        running_requests=12,
        kv_cache_usage=0.42,
        ttft_p95_s=None,
        requests=250,
        window_s=60.0,
    )
    assert PoolLoad.from_json(body()).to_json() == body()
    with pytest.raises(FieldError, match=r"^load.kv_cache_usage: must be <= 1.0"):
        PoolLoad.from_json(body(kv_cache_usage=42))
    with pytest.raises(FieldError, match=r"^load.held_requests: required"):
        PoolLoad.from_json({key: value for key, value in body().items() if key != "held_requests"})


def test_the_requests_each_router_holds_add_up_and_the_runtimes_figures_are_the_highest_seen():
    """Each router replica scrapes the same runtimes: their queues are counted once, not per router."""
    one = PoolLoad.from_json(body(held_requests=2, oldest_held_s=1.5, kv_cache_usage=0.3, ttft_p95_s=None))
    other = PoolLoad.from_json(body(waiting_requests=1, ready_replicas=2, kv_cache_usage=0.6, ttft_p95_s=0.8))
    load = combined_load([one, other], ["http://10.0.0.4:8002: TimeoutError"])
    assert (load.held_requests, load.requests) == (2, 500)
    assert (load.waiting_requests, load.running_requests) == (5, 12)
    assert (load.ready_replicas, load.replicas, load.oldest_held_s) == (3, 4, 1.5)
    assert (load.kv_cache_usage, load.ttft_p95_s) == (0.6, 0.8)
    assert (load.answered, load.partial) == (2, True)
    assert combined_load([], ["no router replicas found"]).answered == 0


async def serve(handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/admin/pools/{pool}/load", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@pytest.mark.asyncio
async def test_replicas_that_do_not_answer_are_left_out_and_named():
    asked = []

    async def answering(request: web.Request) -> web.Response:
        asked.append((request.match_info["pool"], request.query["window_s"], request.headers["Authorization"]))
        return web.json_response(body(held_requests=1))

    async def no_route(request: web.Request) -> web.Response:
        return web.json_response({"error": "no pool"}, status=404)

    async def another_shape(request: web.Request) -> web.Response:
        return web.json_response({"pool": "team-a.chat"})

    servers = [await serve(handler) for handler in (answering, no_route, another_shape)]
    unreachable = f"http://127.0.0.1:{free_port()}"
    client = RouterClient(tuple(url for _, url in servers) + (unreachable,), None, None, "t0ken")
    try:
        load = await client.load("team-a.chat", 60)
    finally:
        await client.close()
        for runner, _ in servers:
            await runner.cleanup()
    assert asked == [("team-a.chat", "60", "Bearer t0ken")]
    assert (load.answered, load.held_requests, load.running_requests) == (1, 1, 12)
    missed = "\n".join(load.missed)
    assert len(load.missed) == 3 and "(HTTP 404)" in missed and "load.ready_replicas: required" in missed
    assert unreachable in missed
