"""Probes every runtime's gRPC Health on an interval and records whether it answered SERVING.

This is what makes a backend ready (registry.py's Backend.ready), and so what the router's /ready
and the balancer's choice of replica follow. The probe goes over the same channel as the requests:
it sees what they would see, and a probe on a channel that went idle after its runtime left makes
it connect again, so a runtime that is back is found within an interval (the channel's reconnect
backoff is capped too, see registry.py).
"""

import asyncio
import logging

import grpc

from shoal.router.backends.registry import Backend, BackendRegistry
from shoal.v1 import runtime_pb2 as pb

log = logging.getLogger(__name__)


class HealthProber:
    def __init__(self, backends: BackendRegistry, interval_s: float, timeout_s: float = 1.0):
        self.backends = backends
        self.interval_s = interval_s
        self.timeout_s = timeout_s

    async def run(self) -> None:
        while True:
            try:
                await self.probe_once()
            except Exception:  # a bug must not end probing for good (every backend would stay as it was)
                log.exception("health probe failed")
            await asyncio.sleep(self.interval_s)

    async def probe_once(self) -> None:
        await asyncio.gather(*(self._probe(b) for b in self.backends.backends()))

    async def _probe(self, backend: Backend) -> None:
        try:
            reply = await backend.stub.Health(pb.HealthRequest(), timeout=self.timeout_s)
            serving, why = reply.status == pb.HealthResponse.SERVING, reply.message
        except grpc.aio.AioRpcError as error:
            serving, why = False, f"{error.code().name}: {error.details()}"
        except asyncio.CancelledError:
            if backend.retired:  # removed meanwhile: closing its channel cancelled the probe, not us
                return
            raise
        if serving != backend.serving:
            if serving:
                log.info("runtime is serving: %s", backend.describe())
            else:
                log.warning("runtime is not serving: %s: %s", backend.describe(), why or "NOT_SERVING")
        self.backends.set_serving(backend, serving)
