"""The operator assembled: credentials, the API and router clients, kopf's registry, kopf's loop."""

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator

import kopf
from aiohttp import web

from shoal.operator.config import OperatorConfig
from shoal.operator.handlers import build_registry
from shoal.operator.kube_api import KubeApi, login
from shoal.operator.reconcile_pass import OperatorContext
from shoal.operator.router_client import RouterClient


async def run_operator(
    config: OperatorConfig,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
    liveness_endpoint: str | None = None,
) -> None:
    kube = KubeApi(login())
    ctx = OperatorContext(config, kube, RouterClient(config.router_admin_urls, config.router_discovery, kube, config.router_admin_token))  # fmt: skip
    namespaces = {"namespaces": list(config.namespaces)} if config.namespaces else {"clusterwide": True}
    try:
        async with serving_metrics(ctx.metrics.app(), config.metrics_address):
            await kopf.operator(
                registry=build_registry(ctx),
                standalone=True,  # one operator replica; no peering objects needed
                stop_flag=stop_flag,
                ready_flag=ready_flag,
                liveness_endpoint=liveness_endpoint,
                **namespaces,
            )
    finally:
        await ctx.close()


@contextlib.asynccontextmanager
async def serving_metrics(app: web.Application, address: tuple[str, int] | None) -> AsyncIterator[None]:
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
