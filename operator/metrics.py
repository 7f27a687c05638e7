"""The operator's Prometheus series: per ModelPool, what it wants and has (replicas), its
conditions, where its rollout stands, and what its autoscaler read and did, set after every
reconcile pass from the plan applied. Alerts on pods not becoming ready and on rollouts that
stopped moving read these.

`sample_of` is pure (plan and pods in, numbers out); `OperatorMetrics` only holds the series.
"""

from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from shoal import metric_names as names
from shoal.operator.autoscale.report import SCALED_DOWN, SCALED_UP
from shoal.operator.plan import Plan
from shoal.operator.route import is_serving
from shoal.operator.spec import AUTOSCALING_SIGNALS
from shoal.operator.status import CONDITION_TYPES, seconds

# Rollout events that end a rollout, and the outcome each counts as.
_OUTCOMES = {"Promoted": "promoted", "RolledBack": "rolled_back"}
# The autoscaler's events, and the direction each counts as.
_DIRECTIONS = {SCALED_UP: "up", SCALED_DOWN: "down"}


@dataclass(frozen=True)
class PoolSample:
    desired_replicas: int  # all the pool's Deployments together: stable, canary, draining
    ready_replicas: int  # its runtime pods that are ready and not terminating
    conditions: dict[str, bool]
    rollout_active: bool
    canary_weight: int
    last_progress: float | None  # when the rollout last moved; None without one
    outcomes: tuple[str, ...]  # rollouts that ended in this pass
    autoscaler_desired: int | None = None  # None: nothing autoscales the pool
    signals: dict[str, tuple[float | None, float]] = field(default_factory=dict)  # signal -> (value, target)
    scalings: tuple[str, ...] = ()  # the autoscaler's replica changes in this pass: up, down


def sample_of(plan: Plan, pods: list[dict]) -> PoolSample:
    status = plan.status
    moved = [t for t in (seconds(status.get("stepStartedAt")), seconds(status.get("waitingSince"))) if t is not None]
    scaling = status.get("autoscaling") or {}
    return PoolSample(
        desired_replicas=sum(d["spec"]["replicas"] for d in plan.deployments.values()),
        ready_replicas=sum(1 for pod in pods if is_serving(pod)),
        conditions={c["type"]: c["status"] == "True" for c in status.get("conditions") or ()},
        rollout_active=bool(status.get("canaryRevision")),
        canary_weight=int(status.get("canaryWeight") or 0),
        last_progress=max(moved) if moved else None,
        outcomes=tuple(_OUTCOMES[e.reason] for e in plan.events if e.reason in _OUTCOMES),
        autoscaler_desired=scaling.get("desiredReplicas"),
        signals={m["type"]: (m.get("value"), m["target"]) for m in scaling.get("metrics") or ()},
        scalings=tuple(_DIRECTIONS[e.reason] for e in plan.events if e.reason in _DIRECTIONS),
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
        self.autoscaler_desired = Gauge(
            names.OPERATOR_AUTOSCALER_DESIRED,
            "Replicas the autoscaler wants for the pool (spec.replicas), with spec.autoscaling.",
            pool,
            registry=r,
        )
        signal = [names.LABEL_POOL, names.LABEL_SIGNAL]
        self.signal_value = Gauge(
            names.OPERATOR_AUTOSCALER_SIGNAL_VALUE,
            "Each autoscaling signal as the autoscaler last read it from the routers (absent with no figure).",
            signal,
            registry=r,
        )
        self.signal_target = Gauge(
            names.OPERATOR_AUTOSCALER_SIGNAL_TARGET,
            "Each autoscaling signal's target (spec.autoscaling.metrics).",
            signal,
            registry=r,
        )
        self.scale_events = Counter(
            names.OPERATOR_AUTOSCALER_SCALE_EVENTS,
            "Replica changes the autoscaler made, by direction (up, down).",
            [names.LABEL_POOL, names.LABEL_DIRECTION],
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
        self._record_autoscaler(pool, sample)

    def _record_autoscaler(self, pool: str, sample: PoolSample) -> None:
        if sample.autoscaler_desired is None:
            self._forget_autoscaler(pool)
            return
        self.autoscaler_desired.labels(pool).set(sample.autoscaler_desired)
        for signal in AUTOSCALING_SIGNALS:
            value, target = sample.signals.get(signal, (None, None))
            for gauge, number in ((self.signal_value, value), (self.signal_target, target)):
                if number is None:
                    self._remove(gauge, pool, signal)
                else:
                    gauge.labels(pool, signal).set(number)
        for direction in _DIRECTIONS.values():
            self.scale_events.labels(pool, direction)  # at 0 from the start, so rate() sees the first one
        for direction in sample.scalings:
            self.scale_events.labels(pool, direction).inc()

    def _forget_autoscaler(self, pool: str) -> None:
        self._remove(self.autoscaler_desired, pool)
        for signal in AUTOSCALING_SIGNALS:
            self._remove(self.signal_value, pool, signal)
            self._remove(self.signal_target, pool, signal)
        for direction in _DIRECTIONS.values():
            self._remove(self.scale_events, pool, direction)

    def forget(self, pool: str) -> None:
        """The pool is gone: so are its series."""
        for gauge in (self.desired, self.ready, self.rollout_active, self.canary_weight, self.last_progress):
            self._remove(gauge, pool)
        for condition in CONDITION_TYPES:
            self._remove(self.condition, pool, condition)
        for outcome in _OUTCOMES.values():
            self._remove(self.rollouts, pool, outcome)
        self._forget_autoscaler(pool)

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
