"""`shoal runtime`: load the model, start the engine thread, serve gRPC and HTTP until told to stop.

On SIGTERM or SIGINT the runtime drains: health turns NOT_SERVING and /ready 503, new requests get
UNAVAILABLE, and requests in flight get up to `shutdown_grace_s` to finish before they are aborted.
"""

import asyncio
import logging
import signal
import time

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from shoal.runtime.build import build_engine, freeze_long_lived_objects
from shoal.runtime.config import EngineConfig, ServerConfig
from shoal.runtime.engine.async_engine import AsyncEngine
from shoal.runtime.engine.queue_limits import QueueLimits
from shoal.runtime.server.fault_injection import FaultInjection
from shoal.runtime.server.grpc_service import RuntimeService, Served
from shoal.runtime.server.http_server import build_http_app
from shoal.runtime.server.metrics import RuntimeMetrics
from shoal.v1 import runtime_pb2, runtime_pb2_grpc

log = logging.getLogger(__name__)
SERVICE_NAME = runtime_pb2.DESCRIPTOR.services_by_name["Runtime"].full_name


async def serve(engine_config: EngineConfig, server_config: ServerConfig) -> None:
    built = await asyncio.to_thread(build_engine, engine_config)
    freeze_long_lived_objects()
    registry = CollectorRegistry()
    metrics = RuntimeMetrics(registry, built.info.served_model_name, server_config.pool, server_config.revision)
    engine = AsyncEngine(built.engine, QueueLimits(server_config.max_waiting), metrics, built.grammars)
    metrics.watch_engine(engine.stats, engine.num_waiting)
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

    await _wait_for_signal()
    log.info("draining: up to %.0fs for %d requests in flight", server_config.shutdown_grace_s, engine.num_in_flight)
    engine.accepting = False
    for service in ("", SERVICE_NAME):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
    deadline = time.monotonic() + server_config.shutdown_grace_s
    while engine.num_in_flight and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await engine.stop()
    await grpc_server.stop(grace=1.0)
    await http_runner.cleanup()
    log.info("stopped")


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
