"""The operator assembled: credentials, the API and router clients, kopf's registry, kopf's loop;
with leader election, kopf starts only once this replica holds the lease, and stops the moment
it cannot renew it."""

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import kopf
from aiohttp import web

from shoal.operator.config import OperatorConfig
from shoal.operator.handlers import build_registry
from shoal.operator.kube_api import KubeApi, login
from shoal.operator.leader_election import LeaderElectionSettings
from shoal.operator.leader_lease import LeaderElector
from shoal.operator.reconcile import OperatorContext
from shoal.operator.router_client import RouterClient

Flag = asyncio.Event | threading.Event


async def run_operator(
    config: OperatorConfig,
    stop_flag: Flag | None = None,
    ready_flag: Flag | None = None,
    liveness_endpoint: str | None = None,
) -> None:
    """Returns when stopped (stop_flag, or SIGTERM once kopf runs); raises LeadershipLost when
    leader election is on and this replica lost the lease."""
    kube = KubeApi(login())
    ctx = OperatorContext(
        config, kube, RouterClient(config.router_admin_urls, config.router_discovery, kube, config.router_admin_token)
    )
    try:
        async with serving(ctx.metrics.app(), config.metrics_address):
            if config.leader_election is None:
                await _run_kopf(ctx, stop_flag, ready_flag, liveness_endpoint)
            else:
                await _run_as_leader(ctx, config.leader_election, stop_flag, ready_flag, liveness_endpoint)
    finally:
        await ctx.close()


async def _run_as_leader(
    ctx: OperatorContext,
    settings: LeaderElectionSettings,
    stop_flag: Flag | None,
    ready_flag: Flag | None,
    liveness_endpoint: str | None,
) -> None:
    elector = LeaderElector(ctx.kube, settings)
    # A standby replica is alive, only not acting: its liveness probe must pass while it waits
    # (kopf serves the endpoint once it runs).
    async with serving(_healthz_app(), _address(liveness_endpoint)):
        if not await elector.acquire(stopping=lambda: stop_flag is not None and stop_flag.is_set()):
            return
    operating = asyncio.create_task(_run_kopf(ctx, stop_flag, ready_flag, liveness_endpoint), name="kopf")
    holding = asyncio.create_task(elector.hold(), name="leader-lease")
    try:
        await asyncio.wait({operating, holding}, return_when=asyncio.FIRST_COMPLETED)
        if holding.done():
            holding.result()  # raises LeadershipLost: the finally stops kopf before anything else
        operating.result()
    finally:
        for task in (operating, holding):
            task.cancel()
        await asyncio.gather(operating, holding, return_exceptions=True)
        await elector.release()  # only while still holding it: a stop on purpose


async def _run_kopf(
    ctx: OperatorContext, stop_flag: Flag | None, ready_flag: Flag | None, liveness_endpoint: str | None
) -> None:
    namespaces = {"namespaces": list(ctx.config.namespaces)} if ctx.config.namespaces else {"clusterwide": True}
    await kopf.operator(
        registry=build_registry(ctx),
        standalone=True,  # no kopf peering objects: leader election (or a single replica) keeps one acting
        stop_flag=stop_flag,
        ready_flag=ready_flag,
        liveness_endpoint=liveness_endpoint,
        **namespaces,
    )


def _healthz_app() -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"standby": True})

    app = web.Application()
    app.router.add_get("/{path:.*}", healthz)
    return app


def _address(endpoint: str | None) -> tuple[str, int] | None:
    if not endpoint:
        return None
    parts = urlsplit(endpoint)
    return parts.hostname or "0.0.0.0", parts.port or 80


@contextlib.asynccontextmanager
async def serving(app: web.Application, address: tuple[str, int] | None) -> AsyncIterator[None]:
    if address is None:
        yield
        return
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, *address).start()
        yield
    finally:
        await runner.cleanup()
