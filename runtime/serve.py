"""`shoal runtime`: load the model, start the engine thread, serve gRPC and HTTP until told to stop.

On SIGTERM or SIGINT the runtime drains: health turns NOT_SERVING and /ready 503, new requests get
UNAVAILABLE, and requests in flight get up to `shutdown_grace_s` to finish before they are aborted.

Under tensor parallelism a lost rank ends the runtime instead: requests in flight fail UNAVAILABLE,
/health answers 503 naming the rank, and the process exits 1 a moment later to be restarted.
"""

import asyncio
import logging
import signal
import time
from dataclasses import replace
from pathlib import Path

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from shoal.runtime.build import build_engine, freeze_long_lived_objects
from shoal.runtime.config import EngineConfig, ServerConfig
from shoal.runtime.engine.async_engine import AsyncEngine
from shoal.runtime.engine.lifecycle import LifecycleConfig
from shoal.runtime.engine.queue_limits import QueueLimits
from shoal.runtime.errors import ParallelWorkerError
from shoal.runtime.server.admin_service import RuntimeAdminService
from shoal.runtime.server.fault_injection import FaultInjection
from shoal.runtime.server.grpc_service import RuntimeService, Served
from shoal.runtime.server.http_server import build_http_app
from shoal.runtime.server.metrics import RuntimeMetrics
from shoal.runtime.startup import StartupClock
from shoal.v1 import runtime_admin_pb2_grpc, runtime_pb2, runtime_pb2_grpc

log = logging.getLogger(__name__)
SERVICE_NAME = runtime_pb2.DESCRIPTOR.services_by_name["Runtime"].full_name
LOST_RANK_EXIT_DELAY_S = 2.0


async def serve(engine_config: EngineConfig, server_config: ServerConfig) -> None:
    clock = StartupClock.since_process_start()
    built = await asyncio.to_thread(build_engine, engine_config, clock)
    freeze_long_lived_objects()
    built.info = replace(built.info, startup=clock.breakdown())  # the total up to serving, a moment away
    log.info("startup: %s", built.info.startup.describe())
    registry = CollectorRegistry()
    metrics = RuntimeMetrics(registry, built.info.served_model_name, server_config.pool, server_config.revision)
    metrics.record_startup(built.info.startup)
    lifecycle = LifecycleConfig(pause_wait_s=server_config.pause_wait_s, weights_version=server_config.weights_version)
    engine = AsyncEngine(built.engine, QueueLimits(server_config.max_waiting), metrics, built.grammars, lifecycle)
    metrics.watch_engine(engine.stats, engine.num_waiting)
    metrics.watch_lifecycle(lambda: engine.paused, engine.weights_version)
    engine.start()

    grpc_server = grpc.aio.server()
    faults = FaultInjection.from_settings(
        server_config.fault_latency_s, server_config.fault_error_rate, server_config.fault_metrics_unavailable
    )
    if faults is not None:
        log.warning("fault injection is on (for testing only): %s", faults)
    runtime_pb2_grpc.add_RuntimeServicer_to_server(
        RuntimeService(
            engine,
            built.tokenizer,
            built.info,
            metrics,
            Served(server_config.pool, server_config.revision, server_config.max_n, server_config.tool_call_parser),
            faults,
        ),
        grpc_server,
    )
    admin_token = _read_token(server_config.admin_token_file)
    runtime_admin_pb2_grpc.add_RuntimeAdminServicer_to_server(
        RuntimeAdminService(engine, admin_token, metrics.record_weight_update), grpc_server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)
    grpc_port = grpc_server.add_insecure_port(f"{server_config.host}:{server_config.port}")
    await grpc_server.start()
    for service in ("", SERVICE_NAME):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)

    http_runner = web.AppRunner(build_http_app(engine, registry, faults), access_log=None)
    await http_runner.setup()
    site = web.TCPSite(http_runner, server_config.host, server_config.metrics_port)
    await site.start()
    log.info(
        "serving %s: gRPC on %s:%d, metrics on http://%s:%d/metrics",
        built.info.served_model_name,
        server_config.host,
        grpc_port,
        server_config.host,
        server_config.metrics_port,
    )

    stop, lost_rank = asyncio.Event(), asyncio.Event()
    if built.parallel is not None:
        loop = asyncio.get_running_loop()

        def rank_lost(message: str) -> None:
            engine.fail(ParallelWorkerError(message))
            loop.call_soon_threadsafe(lost_rank.set)
            loop.call_soon_threadsafe(stop.set)

        built.parallel.on_lost(rank_lost)
    await _wait_for_signal_or(stop)
    if lost_rank.is_set():
        for service in ("", SERVICE_NAME):
            await health_servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        # Long enough for a probe to read why in /health; then out, for the pod to be restarted.
        await asyncio.sleep(LOST_RANK_EXIT_DELAY_S)
        built.parallel.kill()
        log.error("exiting: %s", engine.failure)
        raise SystemExit(1)
    log.info("draining: up to %.0fs for %d requests in flight", server_config.shutdown_grace_s, engine.num_in_flight)
    engine.accepting = False
    for service in ("", SERVICE_NAME):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
    deadline = time.monotonic() + server_config.shutdown_grace_s
    while engine.num_in_flight and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await engine.stop()
    built.close()
    await grpc_server.stop(grace=1.0)
    await http_runner.cleanup()
    log.info("stopped")


def _read_token(path: str | None) -> str | None:
    if path is None:
        log.info("RuntimeAdmin is off (no --admin-token-file): pause, resume and weight updates are refused")
        return None
    token = Path(path).read_text().strip()
    if not token:
        raise ValueError(f"--admin-token-file {path}: the file is empty")
    return token


async def _wait_for_signal_or(event: asyncio.Event) -> None:
    """Until SIGTERM or SIGINT, or `event`."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, event.set)
    await event.wait()
