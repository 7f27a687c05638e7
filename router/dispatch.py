"""Where every request goes, whatever surface it came in on:

    model and QoS class -> pool (traffic/model_pools.py; 404 if none)
          -> tenant limits, router-wide then the pool's (429)
          -> held while the pool has no ready runtime (its cold_start: 429 when full, 503 past max_wait_s)
          -> QoS queue (429 when shed) -> canary split -> replica (balancer)
          -> may it speculate (the pool's rule) -> runtime Generate stream

`Dispatcher.start` does all of that and waits for the runtime's first message, so an error (a bad
parameter the runtime refused, a full queue, a dead backend) is raised before a surface has sent
its client anything (a request held for a pool that is starting waits there too, streamed or not).
The returned Generation streams the rest; closing it early (client gone, `response.cancel`) cancels
the runtime call, which frees its KV blocks. Either way it records the request once: measurement
windows, Prometheus metrics, tenant tokens, QoS slot, backend load.

Its latencies are timed twice. The Prometheus histograms time what the client waited, from arrival.
The measurement windows (rollback rules, QoS batch share, the operator's TTFT) start once the
request leaves the cold-start hold: a held request waited for the pool to have any ready runtime,
which no revision is to blame for (its revision is chosen after the hold), and the hold reports its
own waits (held requests, the oldest one's wait). Otherwise a request held through a probe interval
and then sent to a canary would give it a p99 of that wait, and roll it back.
"""

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable

import grpc

from shoal.router.backends.registry import CONNECT_WAIT_S, Backend, BackendRegistry
from shoal.router.backends.upstream import RUNTIME_UNAVAILABLE, error_from_rpc, generate_request
from shoal.router.errors import ModelNotFound, RateLimitExceeded, RouterError, Unavailable
from shoal.router.metrics import FinishedRequest, RouterMetrics
from shoal.router.pools import PoolState
from shoal.router.request import InferenceRequest
from shoal.router.traffic.measurements import Measurements
from shoal.router.traffic.model_pools import serving
from shoal.router.traffic.qos import REALTIME
from shoal.router.traffic.speculation import SpeculationDecision, decide
from shoal.router.traffic.tenants import Lease, RateLimited, TenantLimiter, estimate_tokens, tighter
from shoal.v1 import runtime_pb2 as pb

log = logging.getLogger(__name__)
CLIENT_CLOSED = 499  # nginx's status for a client that left before the answer


class Dispatcher:
    def __init__(
        self,
        pools: dict[str, PoolState],
        backends: BackendRegistry,
        limiter: TenantLimiter,
        measurements: Measurements,
        metrics: RouterMetrics,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ):
        self.pools = pools
        self.backends = backends
        self.limiter = limiter
        self.measurements = measurements
        self.metrics = metrics
        self.clock = clock
        self.rng = rng or random.Random()

    def models(self) -> list[str]:
        """The model names clients may send, each once (two pools may serve one, by QoS class)."""
        return list(dict.fromkeys(pool.config.model for pool in self.pools.values()))

    def _serving(self, model: str | None, qos: str) -> PoolState | None:
        # A scan, not an index: routes add, rename and remove pools at run time, and pools are few.
        route = serving((pool.config for pool in self.pools.values()), model, qos)
        return None if route is None else self.pools[route.name]

    def limit_headers(self, tenant: str, model: str | None, qos: str) -> dict[str, str]:
        """The tenant's x-ratelimit-* headers: the router-wide limits, or those of the pool the model's
        requests of class `qos` go to, where tighter."""
        now = self.clock()
        status = self.limiter.status(tenant, now)
        pool = self._serving(model, qos)
        if pool is not None:
            status = tighter(status, pool.limiter.status(tenant, now))
        return status.headers()

    async def start(self, request: InferenceRequest) -> "Generation":
        arrival = self.clock()
        pool = self._serving(request.model, request.qos)
        if pool is None:
            error = ModelNotFound(request.model)
            self.metrics.refused("", request.qos, request.tenant, error.http_status)  # no pool to name
            raise error
        try:
            # A pool without endpoints refuses at once, unless it holds its requests (begin() waits then).
            if not pool.config.cold_start.enabled and not any(
                self.backends.backends(pool.name, r) for r in pool.routable_revisions()
            ):
                raise Unavailable(f"No runtime is serving `{request.model}` right now. Please retry later.")
            leases = self._admit_tenant(pool, request, arrival)
        except RouterError as error:
            self.metrics.refused(pool.name, request.qos, request.tenant, error.http_status)
            raise
        generation = Generation(self, pool, request, leases, arrival)
        await generation.begin()
        return generation

    def _admit_tenant(self, pool: PoolState, request: InferenceRequest, now: float) -> tuple[Lease, Lease]:
        """Leases from the router-wide limiter and the pool's; raises RateLimitExceeded, holding neither."""
        estimate = estimate_tokens(request.prompt.num_chars())
        try:
            lease = self.limiter.acquire(request.tenant, estimate, now)
            try:
                return lease, pool.limiter.acquire(request.tenant, estimate, now)
            except RateLimited:
                self.limiter.release(lease, 0, now)  # refused: it costs nothing
                raise
        except RateLimited as limited:
            self.metrics.rate_limited.labels(request.tenant, limited.limit).inc()
            raise RateLimitExceeded(
                str(limited), limited.limit, limited.retry_after_s, limited.status.headers()
            ) from None


class Generation:
    """One request from admission to its last token; whoever started it calls close() when done."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        pool: PoolState,
        request: InferenceRequest,
        leases: tuple[Lease, Lease],
        arrival: float,
    ):
        self.d = dispatcher
        self.pool = pool
        self.request = request
        self.leases = leases  # the router-wide limiter's and the pool's
        self.arrival = arrival
        self.queued_at = arrival  # it reached the QoS queue, past the cold-start hold: the windows time from here
        self.backend: Backend | None = None
        self.call = None
        self.first: pb.GenerateResponse | None = None
        self.finals: list[pb.GenerateResponse] = []  # each choice's last message, in the order they came
        self._admitted = False
        self._closed = False
        self._last_at: dict[int, float] = {}  # each choice's last message: its token gaps are its own
        self._gaps: list[float] = []
        self._completion_tokens = 0

    @property
    def revision(self) -> str:
        return self.backend.endpoint.revision if self.backend is not None else ""

    @property
    def priority(self) -> int:
        return 0 if self.request.qos == REALTIME else self.pool.config.qos.batch_priority

    async def begin(self) -> None:
        """The hold, admission, routing and the runtime's first message; on any error the request is closed."""
        try:
            if self.pool.config.cold_start.enabled and not self.pool.has_ready_backend(self.d.backends):
                await self.pool.hold.wait(self.request.model)
                self.queued_at = self.d.clock()
            await self.pool.gate.acquire(self.request.qos)
            self._admitted = True
            self.d.metrics.queue_time.labels(self.pool.name, self.request.qos).observe(self.d.clock() - self.queued_at)
            head = self.request.prompt.head(self.pool.config.prefix_affinity.prefix_chars)
            self.backend = self.pool.choose(self.d.backends, self.request.session_key, head, self.d.rng)
            if self.backend is None:
                raise Unavailable(f"No runtime is serving `{self.request.model}` right now. Please retry later.")
            self.backend.outstanding += 1
            if not await self.backend.connected(CONNECT_WAIT_S):
                raise Unavailable(RUNTIME_UNAVAILABLE)
            speculate = self._speculation() is SpeculationDecision.ALLOWED
            self.call = self.backend.stub.Generate(generate_request(self.request, self.priority, speculate))
            self.first = await self._read()
        except BaseException as error:
            await self.close(error)
            raise

    def _speculation(self) -> SpeculationDecision:
        """The pool's rule at the pool's load now (this request admitted), and the client's opt-out; counted."""
        sampling, qos = self.request.sampling, self.request.qos
        opted_out = sampling.HasField("speculative") and not sampling.speculative
        decision = decide(self.pool.config.speculative, qos, self.request.tenant, self.pool.gate.load(), opted_out)
        self.d.metrics.speculation_decisions.labels(self.pool.name, qos, decision.value).inc()
        return decision

    async def messages(self) -> AsyncIterator[pb.GenerateResponse]:
        """The runtime's messages, the first one included; raises RouterError if it fails midway."""
        message = self.first
        while message is not None:
            yield message
            if self.finished:
                return
            message = await self._read()

    @property
    def finished(self) -> bool:
        """Every choice has sent its last message."""
        return len(self.finals) == self.request.n

    async def _read(self) -> pb.GenerateResponse:
        """The next message; a failure closes the request (recorded as such) and raises RouterError."""
        try:
            message = await self.call.read()
        except grpc.aio.AioRpcError as rpc_error:
            error = error_from_rpc(rpc_error)
            if error.counts_as_upstream_error:  # the client gets no details: they may name addresses
                log.info(
                    "runtime call failed: %s: %s: %s",
                    self.backend.describe(),
                    rpc_error.code().name,
                    rpc_error.details(),
                )
            await self.close(error)
            raise error from None
        if message is grpc.aio.EOF:
            error = Unavailable("The model server ended the stream without finishing the request.")
            await self.close(error)
            raise error
        now = self.d.clock()
        if not self._last_at:
            pool, revision, qos = self.pool.name, self.revision, self.request.qos
            self.d.measurements.record_first_token(pool, revision, qos, now - self.queued_at, now)
            self.d.metrics.first_token(pool, revision, qos, now - self.arrival)
        elif message.index in self._last_at:
            self._gaps.append(now - self._last_at[message.index])
        self._last_at[message.index] = now
        self._completion_tokens += len(message.token_ids)
        if message.finish_reason == pb.FINISH_REASON_ABORT:
            error = Unavailable("The model server aborted the request (it is shutting down or failed).")
            await self.close(error)
            raise error
        if message.finish_reason != pb.FINISH_REASON_UNSPECIFIED:
            self.finals.append(message)
            if self.finished:
                await self.close()
        return message

    async def close(self, error: BaseException | None = None) -> None:
        """Ends the request once: cancels the runtime call if it is still going, records the outcome."""
        if self._closed:
            return
        self._closed = True
        now = self.d.clock()
        if isinstance(error, RouterError) and self.backend is not None:
            error.headers.setdefault("x-shoal-revision", self.revision)
        if self.call is not None and not self.call.done():
            self.call.cancel()
        if self.backend is not None:
            self.d.backends.release(self.backend)
        if self._admitted:
            self.pool.gate.release(self.request.qos)
        prompt_tokens, completion_tokens = self._tokens_worked_on()
        self.d.limiter.release(self.leases[0], prompt_tokens + completion_tokens, now)
        self.pool.limiter.release(self.leases[1], prompt_tokens + completion_tokens, now)
        self._record(error, prompt_tokens, completion_tokens, now)

    def _tokens_worked_on(self) -> tuple[int, int]:
        """Prompt and completion tokens the runtime worked on, as tenants are charged and metrics count
        them: its usage when it finished; the prompt's estimate and the tokens streamed so far when
        the request was cut short after the runtime started it; none when it never started."""
        if self.finished:  # the prompt once, every choice's completion
            return self.finals[0].usage.prompt_tokens, sum(f.usage.completion_tokens for f in self.finals)
        if not self._last_at:  # not a message from the runtime
            return 0, 0
        return self.leases[0].estimated_tokens, self._completion_tokens

    def _record(self, error: BaseException | None, prompt_tokens: int, completion_tokens: int, now: float) -> None:
        if isinstance(error, RouterError):
            status = error.http_status
        elif self.finished:
            status = 200
        elif error is None or isinstance(error, (asyncio.CancelledError, ConnectionError)):
            status = CLIENT_CLOSED  # cancelled, or the surface failed to deliver
        else:
            status = 500  # a router bug: counted where 5xx alerts see it
        pool, qos, tenant = self.pool.name, self.request.qos, self.request.tenant
        if self.backend is None:
            self.d.metrics.refused(pool, qos, tenant, status)
            return
        upstream_failed = isinstance(error, RouterError) and error.counts_as_upstream_error
        if upstream_failed:
            self.d.metrics.upstream_errors.labels(pool, self.revision, error.upstream_code or "UNKNOWN").inc()
        e2e = now - self.arrival if status == 200 else None
        if status == 200 or upstream_failed:  # the windows judge runtimes: not clients leaving or refused input
            self.d.measurements.record_finish(
                pool,
                self.revision,
                qos,
                now,
                error=upstream_failed,
                e2e_s=now - self.queued_at if status == 200 else None,
                token_gaps_s=self._gaps,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
            )
        self.d.metrics.finished(
            FinishedRequest(pool, self.revision, qos, tenant, status, e2e, self._gaps, prompt_tokens, completion_tokens)
        )
