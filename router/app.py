"""The router assembled from its config: every part built once, wired, started and stopped here.

Public HTTP (OpenAI API, /v1/realtime, /health, /ready), the admin API and the router's Prometheus
/metrics on the admin port (its labels name every tenant, so it stays off the public port), the
public gRPC API, and four background tasks: the endpoint source (static file or Kubernetes),
the health prober and the scraper of the runtimes, and the control loop that evaluates rollback
rules and the batch share.

The pools start as the config file's and change when the operator pushes routes (routes.py); the
endpoint source and the pushed routes meet in the route table, which feeds the registry.

/health is the liveness probe (the process answers); /ready the readiness probe (see `_ready`).
Both HTTP ports close connections that sit without a request for `client_idle_timeout_s`.
"""

import asyncio
import contextlib
import logging
import random
import time

import grpc
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from shoal.router.admin import build_admin_app
from shoal.router.backends.endpoints import EndpointSource, StaticEndpointSource
from shoal.router.backends.health import HealthProber
from shoal.router.backends.registry import BackendRegistry
from shoal.router.backends.route_table import RouteTable
from shoal.router.config import RouterConfig
from shoal.router.dispatch import Dispatcher
from shoal.router.grpc_api.service import InferenceService
from shoal.router.identity import Authenticator
from shoal.router.metrics import RouterMetrics
from shoal.router.openai.errors import QuietAppRunner, openai_errors
from shoal.router.openai.handlers import OpenAIHandlers
from shoal.router.pools import PoolState
from shoal.router.realtime.session import RealtimeSessions
from shoal.router.routes import Routes
from shoal.router.scraper import Scraper
from shoal.router.traffic.measurements import Measurements
from shoal.router.traffic.tenants import TenantLimiter
from shoal.v1 import router_pb2_grpc

log = logging.getLogger(__name__)
MIN_RETENTION_S = 300.0


class Router:
    def __init__(self, config: RouterConfig, source: EndpointSource | None = None, rng: random.Random | None = None):
        self.config = config
        self.registry = CollectorRegistry()
        self.metrics = RouterMetrics(self.registry)
        self.measurements = Measurements(
            retention_s=max([MIN_RETENTION_S, *(p.longest_window_s for p in config.pools)])
        )
        self.backends = BackendRegistry(rng)
        self.pools = {p.name: PoolState(p) for p in config.pools}
        self.route_table = RouteTable(self.backends.apply, self.pools)
        self.routes = Routes(
            self.pools, self.route_table, self.backends, self.measurements, [t.name for t in config.tenants]
        )
        self.limiter = TenantLimiter(config.tenants, time.monotonic())
        self.dispatcher = Dispatcher(self.pools, self.backends, self.limiter, self.measurements, self.metrics, rng=rng)
        self.auth = Authenticator(config)
        self.realtime = RealtimeSessions(self.dispatcher, self.auth, config.realtime)
        self.source = source or StaticEndpointSource(config.pools)
        self.scraper = Scraper(self.backends, self.measurements, config.scrape_interval_s)
        self.prober = HealthProber(self.backends, config.health_interval_s)
        self.backends.on_change.append(self._backends_changed)
        self.metrics.watch(self.pools, self.measurements, self.backends, lambda: len(self.realtime.open))
        self.draining = False
        self.http_port = self.admin_port = self.grpc_port = 0
        self._runners: list[web.AppRunner] = []
        self._grpc_server: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task] = []

    def http_app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body_bytes, middlewares=[openai_errors])
        app.add_routes(OpenAIHandlers(self.dispatcher, self.auth, self.config.client_body_timeout_s).routes())
        app.router.add_get("/v1/realtime", self.realtime.handle)
        app.router.add_get("/health", self._health)
        app.router.add_get("/ready", self._ready)
        return app

    def admin_app(self) -> web.Application:
        return build_admin_app(
            self.routes, self.backends, self.measurements, self.limiter, self.config.admin_token, self._metrics
        )

    async def start(self) -> None:
        self._spawn(self.source.run(self.route_table.from_source), "endpoint-source")
        self._spawn(self.prober.run(), "health-prober")
        self._spawn(self.scraper.run(), "scraper")
        self._spawn(self._control_loop(), "control-loop")
        await asyncio.sleep(0)  # a static source publishes at once
        # handler_cancellation: a client that disconnects cancels its handler, and so its runtime call.
        self.http_port = await self._serve_http(
            self.http_app(), self.config.listen.host, self.config.listen.port, handler_cancellation=True
        )
        self.admin_port = await self._serve_http(self.admin_app(), self.config.admin.host, self.config.admin.port)
        if self.config.admin_token is None:  # config.py refuses this on any host but a loopback one
            log.warning(
                "the admin API on %s:%d has no token (admin.token_file): anyone on this machine can change routes",
                self.config.admin.host,
                self.admin_port,
            )
        if self.config.grpc is not None:
            self._grpc_server = grpc.aio.server()
            router_pb2_grpc.add_InferenceServicer_to_server(
                InferenceService(self.dispatcher, self.auth), self._grpc_server
            )
            self.grpc_port = self._grpc_server.add_insecure_port(f"{self.config.grpc.host}:{self.config.grpc.port}")
            await self._grpc_server.start()
        log.info(
            "router serving %s: OpenAI API on http://%s:%d/v1, admin API and /metrics on :%d, gRPC on :%s",
            ", ".join(self.dispatcher.models()) or "no pools until routes are pushed",
            self.config.listen.host,
            self.http_port,
            self.admin_port,
            self.grpc_port or "off",
        )

    async def stop(self, grace_s: float = 10.0) -> None:
        """Turns /ready 503, lets requests in flight finish for up to grace_s, then stops."""
        self.draining = True
        deadline = time.monotonic() + grace_s
        while self.in_flight() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self.realtime.close_all()
        if self._grpc_server is not None:
            await self._grpc_server.stop(grace=1.0)
        for runner in self._runners:
            await runner.cleanup()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.backends.close_all()

    def in_flight(self) -> int:
        """Requests running, queued for a slot, or held until a runtime is ready."""
        return sum(
            p.hold.held() + sum(p.gate.in_flight(q) + p.gate.queued(q) for q in ("realtime", "batch"))
            for p in self.pools.values()
        )

    async def _serve_http(self, app: web.Application, host: str, port: int, **runner_options) -> int:
        # aiohttp's keep-alive timer runs from the moment a connection opens or a response ends, and
        # closes the connection if no whole request has arrived by then: idle clients and slowloris.
        runner = QuietAppRunner(
            app, access_log=None, keepalive_timeout=self.config.client_idle_timeout_s, **runner_options
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runners.append(runner)
        return site._server.sockets[0].getsockname()[1]

    def _spawn(self, coroutine, name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        task.add_done_callback(_log_unexpected_end)
        self._tasks.append(task)

    async def _control_loop(self) -> None:
        while True:
            now, wall_now = time.monotonic(), time.time()
            for pool in self.pools.values():
                try:
                    verdict = pool.control(self.measurements, self.backends, now, wall_now)
                except Exception:  # a bug must not stop the other pools' rollback checks for good
                    log.exception("control step of pool %s failed", pool.name)
                    continue
                if verdict is not None:
                    self.metrics.rollbacks.labels(pool.name, verdict.revision, verdict.breaches[0].rule).inc()
            self.measurements.prune(now)
            await asyncio.sleep(self.config.control_interval_s)

    def _backends_changed(self) -> None:
        for pool in self.pools.values():
            pool.refresh(self.backends)

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _ready(self, request: web.Request) -> web.Response:
        """The readiness probe: 200 while the router can serve something, so Kubernetes keeps it in
        its Service only then. That is: not draining, and at least one pool takes requests: it has a
        ready backend in a revision it sends traffic to (stable, or the canary while its weight is
        above 0), a ready backend being a runtime whose last gRPC Health probe answered SERVING
        (registry.py's Backend.ready), or it holds its requests until it has one (its route's
        cold_start, on by default): a pool scaled to zero wakes on the requests that reach it, so the
        router must stay in its Service while the pool has no runtime. 503 otherwise. A router with
        no pools at all is ready: there is nothing behind it to wait for, and `helm install --wait`
        of a fresh release (no ModelPool yet) must not hang; it answers 404 for every model, as it
        should. The operator reaches routers on their admin port whether Ready or not
        (operator/router_client.py), so a new replica gets its routes within a reconcile pass."""
        if self.draining:
            return web.Response(status=503, text="draining")
        if not self.pools:
            return web.Response(text="ready (no pools)")
        if not self.serving():
            return web.Response(status=503, text="no pool has a ready runtime")
        return web.Response(text="ready")

    def serving(self) -> bool:
        """Whether some pool takes requests: it has a ready backend in a revision it routes to, or it
        holds them until it has one."""
        return any(
            pool.config.cold_start.enabled or pool.has_ready_backend(self.backends) for pool in self.pools.values()
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _log_unexpected_end(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s stopped", task.get_name(), exc_info=task.exception())
