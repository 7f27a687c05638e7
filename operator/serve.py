"""The operator assembled: credentials, the API and router clients, kopf's registry, kopf's loop."""

import asyncio
import threading

import kopf

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
