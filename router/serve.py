"""`shoal router`: build the router from its config, serve until SIGTERM or SIGINT, then drain."""

import asyncio
import logging
import signal

from shoal.router.app import Router
from shoal.router.config import RouterConfig

log = logging.getLogger(__name__)


async def serve(config: RouterConfig, shutdown_grace_s: float = 10.0, stop: asyncio.Event | None = None) -> None:
    router = Router(config)
    await router.start()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("draining: up to %.0fs for %d requests", shutdown_grace_s, router.in_flight())
    await router.stop(shutdown_grace_s)
    log.info("stopped")
