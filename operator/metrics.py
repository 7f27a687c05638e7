"""The operator's Prometheus series: per ModelPool, what it wants and has (replicas), its
conditions, and where its rollout stands, set after every reconcile pass from the plan applied.
Alerts on pods not becoming ready and on rollouts that stopped moving read these.

`sample_of` is pure (plan and pods in, numbers out); `OperatorMetrics` only holds the series.
"""

from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from shoal import metric_names as names
from shoal.operator.plan import Plan
from shoal.operator.route import is_serving
from shoal.operator.status import CONDITION_TYPES, seconds

# Rollout events that end a rollout, and the outcome each counts as.
_OUTCOMES = {"Promoted": "promoted", "RolledBack": "rolled_back"}


@dataclass(frozen=True)
class PoolSample:
    desired_replicas: int  # all the pool's Deployments together: stable, canary, draining
    ready_replicas: int  # its runtime pods that are ready and not terminating
    conditions: dict[str, bool]
    rollout_active: bool
    canary_weight: int
    last_progress: float | None  # when the rollout last moved; None without one
    outcomes: tuple[str, ...]  # rollouts that ended in this pass


def sample_of(plan: Plan, pods: list[dict]) -> PoolSample:
    status = plan.status
    moved = [t for t in (seconds(status.get("stepStartedAt")), seconds(status.get("waitingSince"))) if t is not None]
    return PoolSample(
        desired_replicas=sum(d["spec"]["replicas"] for d in plan.deployments.values()),
        ready_replicas=sum(1 for pod in pods if is_serving(pod)),
        conditions={c["type"]: c["status"] == "True" for c in status.get("conditions") or ()},
        rollout_active=bool(status.get("canaryRevision")),
        canary_weight=int(status.get("canaryWeight") or 0),
        last_progress=max(moved) if moved else None,
        outcomes=tuple(_OUTCOMES[e.reason] for e in plan.events if e.reason in _OUTCOMES),
    )


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        pool, r = [names.LABEL_POOL], self.registry
        self.desired = Gauge(
            names.OPERATOR_REPLICAS_DESIRED,
            "Runtime replicas the pool's Deployments ask for, all revisions.",
            pool,
            registry=r,
        )
        self.ready = Gauge(
            names.OPERATOR_REPLICAS_READY,
            "Runtime pods of the pool that are ready and not terminating.",
            pool,
            registry=r,
        )
        self.condition = Gauge(
            names.OPERATOR_POOL_CONDITION,
            "1 where the pool's status condition is True.",
            [names.LABEL_POOL, names.LABEL_CONDITION],
            registry=r,
        )
        self.rollout_active = Gauge(
            names.OPERATOR_ROLLOUT_ACTIVE, "1 while a canary revision is rolled out.", pool, registry=r
        )
        self.canary_weight = Gauge(
            names.OPERATOR_ROLLOUT_CANARY_WEIGHT, "The canary's share of traffic, percent.", pool, registry=r
        )
        self.last_progress = Gauge(
            names.OPERATOR_ROLLOUT_LAST_PROGRESS,
            "When the rollout last moved (began, stepped, began promoting), Unix seconds.",
            pool,
            registry=r,
        )
        self.rollouts = Counter(
            names.OPERATOR_ROLLOUTS,
            "Rollouts ended, by outcome (promoted, rolled_back).",
            [names.LABEL_POOL, names.LABEL_OUTCOME],
            registry=r,
        )

    def record(self, pool: str, sample: PoolSample) -> None:
        self.desired.labels(pool).set(sample.desired_replicas)
        self.ready.labels(pool).set(sample.ready_replicas)
        for condition in CONDITION_TYPES:
            self.condition.labels(pool, condition).set(1 if sample.conditions.get(condition) else 0)
        self.rollout_active.labels(pool).set(1 if sample.rollout_active else 0)
        self.canary_weight.labels(pool).set(sample.canary_weight)
        if sample.last_progress is not None:
            self.last_progress.labels(pool).set(sample.last_progress)
        else:
            self._remove(self.last_progress, pool)
        for outcome in sample.outcomes:
            self.rollouts.labels(pool, outcome).inc()

    def forget(self, pool: str) -> None:
        """The pool is gone: so are its series."""
        for gauge in (self.desired, self.ready, self.rollout_active, self.canary_weight, self.last_progress):
            self._remove(gauge, pool)
        for condition in CONDITION_TYPES:
            self._remove(self.condition, pool, condition)
        for outcome in _OUTCOMES.values():
            self._remove(self.rollouts, pool, outcome)

    @staticmethod
    def _remove(metric: Gauge | Counter, *labels: str) -> None:
        try:
            metric.remove(*labels)
        except KeyError:  # never set
            pass

    def app(self) -> web.Application:
        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        return app
