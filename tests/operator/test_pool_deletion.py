"""A pool deleted while its timer's reconcile pass is still running goes within seconds: kopf waits
for that pass to end before it removes the finalizer, and the operator has it look again every
second, not after kopf's default minute. The passes are made slow by a router admin API that
answers each request after a delay (a proxy in front of the real router), so that the deletion
almost always lands inside one."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from tests.operator.harness import POOL, admin_url, modelpool, pool_status, pools, running_operator
from tests.support.control_plane import free_port
from tests.support.operator_account import token
from tests.support.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

ROUTER_DELAY_S = 1.0


@contextlib.asynccontextmanager
async def slow_proxy(target: str, delay_s: float) -> AsyncIterator[str]:
    """http://127.0.0.1:<port> forwarding every request to `target` after `delay_s`."""
    async with aiohttp.ClientSession() as session:

        async def forward(request: web.Request) -> web.Response:
            await asyncio.sleep(delay_s)
            headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
            body = await request.read()
            async with session.request(request.method, target + request.path_qs, data=body, headers=headers) as answer:
                return web.Response(status=answer.status, body=await answer.read(), content_type=answer.content_type)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            await runner.cleanup()


async def test_a_pool_deleted_during_a_slow_pass_goes_within_seconds(operator_rbac, namespace, api, router, tmp_path):
    account = token(operator_rbac, tmp_path / "operator.kubeconfig")
    async with (
        slow_proxy(admin_url(router), ROUTER_DELAY_S) as slow_router,
        running_operator(account.kubeconfig, slow_router, tmp_path / "operator.log", namespaces=[namespace]),
    ):
        await api.create(pools(namespace), modelpool("v1"))
        await eventually(lambda: pool_status(api, namespace), lambda s: s.get("phase") == "Ready", timeout=60)
        await api.delete(pools(namespace, POOL))
        deleted_at = time.monotonic()
        await eventually(lambda: api.list(pools(namespace)), lambda left: not left, timeout=40, what="pool deleted")
        # A pass or two (a few router requests of ROUTER_DELAY_S each), then the deletion handler's own.
        assert time.monotonic() - deleted_at < 15
