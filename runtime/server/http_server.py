"""The runtime's HTTP side: /metrics (Prometheus text format), /health and /ready for probes.

/health answers whether the engine loop is alive (liveness); /ready additionally turns 503 while
the runtime drains for shutdown or is paused, so Kubernetes takes the pod out of its Service first.
"""

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from shoal.runtime.engine.async_engine import AsyncEngine
from shoal.runtime.server.fault_injection import FaultInjection


def build_http_app(engine: AsyncEngine, registry: CollectorRegistry, faults: FaultInjection | None) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        if faults is not None and faults.metrics_unavailable:
            return web.Response(status=503, text="injected fault (--fault-metrics-unavailable, for testing only)")
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health(_: web.Request) -> web.Response:
        if engine.healthy:
            return web.Response(text="ok")
        reason = f": {engine.failure}" if engine.failure is not None else ""
        return web.Response(status=503, text=f"engine failed{reason}")

    async def ready(_: web.Request) -> web.Response:
        is_ready = engine.healthy and engine.accepting and not engine.paused
        return web.Response(status=200 if is_ready else 503, text="ready" if is_ready else "not ready")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    return app
