"""One pool's live state: its rollout (split and verdicts), its QoS gate and batch share, its tenant
limits, the requests it holds while no runtime is ready, and the decisions that need them: which
revision and replica a request goes to, the periodic control step (rollback rules, batch share,
capacity), and its load as the operator reads it. A new route reconfigures it in place."""

import logging
import random
import time
from collections.abc import Callable

from shoal.pool_load import PoolLoad
from shoal.route_contract import Route
from shoal.router.backends.registry import Backend, BackendRegistry
from shoal.router.cold_start import ColdStartHold
from shoal.router.qos_gate import QosGate
from shoal.router.traffic import rollback
from shoal.router.traffic.measurements import Measurements
from shoal.router.traffic.qos import REALTIME, BatchShare
from shoal.router.traffic.rollout import PoolRollout, Verdict
from shoal.router.traffic.split import Split
from shoal.router.traffic.tenants import TenantLimiter

log = logging.getLogger(__name__)
QOS_CONTROL_WINDOW_S = 5.0  # realtime TTFT samples the batch share reacts to


class PoolState:
    def __init__(self, config: Route, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.name = config.name
        self.clock = clock
        self.rollout = PoolRollout(Split(config.stable, config.canary, config.canary_weight))
        self.gate = QosGate(config.qos, clock)
        self.batch_share = BatchShare(config.qos)
        self.limiter = TenantLimiter(config.tenants, clock(), scope=f"pool {config.name}")
        self.hold = ColdStartHold(config.cold_start, clock)

    def reconfigure(self, config: Route) -> None:
        """A new route for this pool. Verdicts, queues, requests in flight and token buckets carry over;
        a split that would send traffic to a rolled-back revision raises RolloutConflict first, changing nothing."""
        self.rollout.set_weights(config.stable, config.canary, config.canary_weight)
        self.config = config
        self.gate.reconfigure(config.qos)
        self.batch_share.reconfigure(config.qos)
        self.limiter.reconfigure(config.tenants, self.clock())
        self.hold.reconfigure(config.cold_start)

    def routable_revisions(self) -> list[str]:
        split = self.rollout.split
        return [split.stable] + ([split.canary] if self.rollout.canary_active else [])

    def choose(
        self, registry: BackendRegistry, session_key: str | None, prompt_head: str, rng: random.Random
    ) -> Backend | None:
        """The revision by the split, then the replica. A revision with no ready runtime (a canary whose
        runtimes have not answered a health probe yet) gives way to one that has: its requests would
        wait for a connection there. With none ready anywhere, one with endpoints is tried."""
        sticky_key = session_key if self.config.sticky else None
        revision = self.rollout.split.choose(sticky_key, rng)
        if revision in self.rollout.rolled_back:  # weights are 0 then; belt and braces
            revision = self.rollout.split.stable
        affinity = self.config.prefix_affinity
        affinity_key = (session_key or prompt_head) if affinity.enabled else None
        candidates = list(dict.fromkeys([revision] + self.routable_revisions()))
        ready = [c for c in candidates if self._has_ready(registry, c)]
        for candidate in ready or candidates:
            backend = registry.pick(self.name, candidate, affinity_key, affinity.max_load_factor)
            if backend is not None:
                return backend
        return None

    def has_ready_backend(self, registry: BackendRegistry) -> bool:
        """Whether a revision it routes to has a runtime whose last health probe answered SERVING."""
        return any(self._has_ready(registry, revision) for revision in self.routable_revisions())

    def _has_ready(self, registry: BackendRegistry, revision: str) -> bool:
        return any(b.ready for b in registry.backends(self.name, revision))

    def refresh(self, registry: BackendRegistry) -> None:
        """After its endpoints, their readiness or its split changed: the QoS capacity from the endpoints
        and, once a runtime is ready, the requests held until then (capacity first: they go on to the gate)."""
        endpoints = sum(len(registry.backends(self.name, revision)) for revision in self.routable_revisions())
        if self.config.cold_start.enabled:
            # At zero the hold in front of the gate keeps requests; a gate of no capacity would queue
            # the few that passed it as the last runtime went, out of the hold's (and the operator's) sight.
            endpoints = max(endpoints, 1)
        self.gate.set_capacity(endpoints * self.config.qos.max_concurrency_per_endpoint, self.batch_share_now())
        if self.has_ready_backend(registry):
            self.hold.release()

    def batch_share_now(self) -> float:
        """Batch's share of the pool's concurrency: the one that shrinks as realtime TTFT nears its
        target, or all of it in a pool that takes no realtime requests: there is no realtime latency
        to protect there, and a batch pool held to half its capacity would only scale out to idle."""
        return self.batch_share.share if REALTIME in self.config.qos_classes else 1.0

    def measured_load(
        self, registry: BackendRegistry, measurements: Measurements, window_s: float, now: float
    ) -> PoolLoad:
        """What the operator sizes the pool from; see shoal/pool_load.py for each figure."""
        backends = registry.backends(self.name)
        scraped = [b.known_load for b in backends if b.known_load is not None]
        kv = [b.known_load.kv_usage for b in backends if b.ready and b.known_load is not None]
        stats = measurements.stats(self.name, None, window_s, now)
        return PoolLoad(
            pool=self.name,
            ready_replicas=sum(b.ready for b in backends),
            replicas=len(backends),
            held_requests=self.hold.held(),
            oldest_held_s=round(self.hold.queue.oldest_s(now), 3),
            waiting_requests=sum(load.waiting for load in scraped),
            running_requests=sum(load.running for load in scraped),
            kv_cache_usage=sum(kv) / len(kv) if kv else 0.0,
            ttft_p95_s=stats.quantile("ttft", 0.95),
            requests=stats.requests,
            window_s=stats.window_s,
        )

    def control(
        self, measurements: Measurements, registry: BackendRegistry, now: float, wall_now: float
    ) -> Verdict | None:
        """Rollback rules, then the batch share and capacity; returns a new verdict if one was reached."""
        verdict = None
        split = self.rollout.split
        if self.rollout.canary_active:
            breaches = rollback.evaluate(
                self.config.rollback_rules,
                split.canary,
                split.stable,
                lambda revision, window_s: measurements.stats(self.name, revision, window_s, now),
            )
            verdict = self.rollout.roll_back(breaches, wall_now)
            if verdict is not None:
                log.warning("pool %s: canary %s rolled back: %s", self.name, verdict.revision, verdict.reason)
        realtime = measurements.stats(self.name, None, QOS_CONTROL_WINDOW_S, now, qos=REALTIME)
        self.batch_share.update(realtime.quantile("ttft", 0.95))
        self.refresh(registry)
        return verdict
