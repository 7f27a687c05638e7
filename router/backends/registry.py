"""The runtime endpoints the router knows, one gRPC channel each, with their live load.

A source publishes endpoint sets; `apply` opens channels for new endpoints and retires removed
ones (their channel closes once the requests still in flight there have finished, so a weight or
endpoint change never drops a request). The health prober (health.py) reports whether each runtime
answers SERVING (`set_serving`), the scraper writes its load; the dispatcher picks backends through
the balancer and counts its outstanding requests.

Only the health probe decides whether a runtime is ready. A runtime whose /metrics cannot be read
(the scrape target is down, the runtime itself may be fine) keeps its traffic; its scraped load is
forgotten until it answers again, and the admin API reports it, so the operator can say that the
rules reading those metrics are blind (the scrape's own failure is no sign the runtime is bad).

Channels retry a lost connection at most RECONNECT_BACKOFF_MAX_MS apart. gRPC's default backoff
grows to 120 s, and while a channel waits it fails every call at once: a runtime back after a long
outage would get no traffic for up to two minutes. An attempt at a runtime that is down is a
refused connection, so one a second is cheap.
"""

import asyncio
import logging
import random
from dataclasses import dataclass

import grpc

from shoal.router.backends import balancer
from shoal.router.backends.endpoints import Endpoint
from shoal.v1 import runtime_pb2_grpc

log = logging.getLogger(__name__)
STALE_AFTER_FAILED_SCRAPES = 3  # consecutive failed scrapes after which its load is unknown
RECONNECT_BACKOFF_MAX_MS = 1000
CONNECT_WAIT_S = RECONNECT_BACKOFF_MAX_MS / 1000 + 0.5  # a request waits out one reconnect, no more
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
)


@dataclass
class ScrapedLoad:
    kv_usage: float = 0.0
    waiting: int = 0
    running: int = 0
    preemptions_total: int = 0
    oom_errors_total: int = 0
    started_at: float | None = None  # the runtime's process start (Unix time), if it says


@dataclass
class Backend:
    endpoint: Endpoint
    channel: grpc.aio.Channel
    stub: runtime_pb2_grpc.RuntimeStub
    outstanding: int = 0
    scraped: ScrapedLoad | None = None
    failed_scrapes: int = 0
    serving: bool = False  # its last health probe answered SERVING; False until the first one does
    retired: bool = False

    @property
    def ready(self) -> bool:
        """Not retired, and its last health probe answered SERVING."""
        return not self.retired and self.serving

    @property
    def metrics_failing(self) -> bool:
        """Its /metrics has failed the last STALE_AFTER_FAILED_SCRAPES scrapes."""
        return self.failed_scrapes >= STALE_AFTER_FAILED_SCRAPES

    async def connected(self, timeout_s: float) -> bool:
        """Whether the channel is connected, waiting up to timeout_s for it. A channel that found its
        runtime not yet listening (started together, or restarted) backs off, and meanwhile fails every
        call at once; a runtime that is up again is worth the wait of one reconnect."""
        if self.channel.get_state(try_to_connect=True) is grpc.ChannelConnectivity.READY:
            return True
        try:
            await asyncio.wait_for(self.channel.channel_ready(), timeout_s)
        except TimeoutError:
            return False
        return True

    def describe(self) -> str:
        """How logs name the runtime; its address goes to logs only, never into answers to clients."""
        e = self.endpoint
        return f"pool={e.pool} revision={e.revision} target={e.target}"

    @property
    def known_load(self) -> ScrapedLoad | None:
        """What the last scrape read, unless its /metrics has been failing: then its load is unknown."""
        return None if self.metrics_failing else self.scraped

    def load(self) -> balancer.Load:
        scraped = self.known_load or ScrapedLoad()
        return balancer.Load(self.endpoint.target, self.outstanding, scraped.waiting, scraped.kv_usage)


class BackendRegistry:
    def __init__(self, rng: random.Random | None = None):
        self.rng = rng or random.Random()
        self._backends: dict[Endpoint, Backend] = {}
        self._retiring: list[Backend] = []  # removed, closing once their requests have finished
        self._closing: set[asyncio.Task] = set()
        # Callables run after every apply and every change of a backend's readiness: pools refresh
        # their capacity, and release the requests they hold once a runtime is ready.
        self.on_change = []

    def apply(self, endpoints: frozenset[Endpoint]) -> None:
        for endpoint in endpoints - self._backends.keys():
            channel = grpc.aio.insecure_channel(endpoint.target, options=CHANNEL_OPTIONS)
            self._backends[endpoint] = Backend(endpoint, channel, runtime_pb2_grpc.RuntimeStub(channel))
            log.info("backend added: %s", self._backends[endpoint].describe())
        for endpoint in self._backends.keys() - endpoints:
            backend = self._backends.pop(endpoint)
            backend.retired = True
            self._retiring.append(backend)
            log.info("backend removed: %s", backend.describe())
        self.close_idle_retired()
        self._changed()

    def set_serving(self, backend: Backend, serving: bool) -> None:
        """A health probe's answer; a change is reported to on_change."""
        if serving != backend.serving:
            backend.serving = serving
            self._changed()

    def _changed(self) -> None:
        for callback in self.on_change:
            callback()

    def backends(self, pool: str | None = None, revision: str | None = None) -> list[Backend]:
        return [
            b
            for b in self._backends.values()
            if (pool is None or b.endpoint.pool == pool) and (revision is None or b.endpoint.revision == revision)
        ]

    def revisions(self, pool: str) -> set[str]:
        return {b.endpoint.revision for b in self._backends.values() if b.endpoint.pool == pool}

    def pick(
        self, pool: str, revision: str, affinity_key: str | None = None, max_load_factor: float = 1.5
    ) -> Backend | None:
        """A backend of that revision (ready ones first; all if none is ready), or None if it has none."""
        candidates = self.backends(pool, revision)
        ready = [b for b in candidates if b.ready]
        candidates = ready or candidates
        if not candidates:
            return None
        candidates.sort(key=lambda b: b.endpoint.target)  # stable order: affinity must not depend on dict order
        index = balancer.pick([b.load() for b in candidates], self.rng, affinity_key, max_load_factor)
        return candidates[index]

    def release(self, backend: Backend) -> None:
        backend.outstanding -= 1
        if backend.retired:
            self.close_idle_retired()

    def close_idle_retired(self) -> None:
        for backend in [b for b in self._retiring if b.outstanding == 0]:
            self._retiring.remove(backend)
            task = asyncio.get_running_loop().create_task(backend.channel.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close_all(self) -> None:
        for backend in list(self._backends.values()) + self._retiring:
            await backend.channel.close()
        self._backends.clear()
        self._retiring.clear()
        if self._closing:
            await asyncio.gather(*self._closing)
