"""The autoscaler's decision, as a pure function: a pool's autoscaling spec, its replicas, the
routers' load and what the autoscaler recommended lately, in; the replicas it should have and why,
out. reconcile.py reads the load and keeps the history, plan.py turns the decision into
spec.replicas (written through the scale subresource), status and events.

    per signal     ceil(ready x value / target), as the HPA; within the tolerance, the current count.
                   waitingPerReplica and ttftP95 only push up: below their target they have no say
    recommended    the largest of them; with none, the current count
    stabilized     up to the lowest recommendation of the scale-up window, down to the highest of the
                   scale-down window (the HPA's behavior)
    step-limited   at most maxStepReplicas or maxStepPercent more (fewer) per period, whichever allows more
    then           idle for scaleToZeroAfterSeconds: minReplicas at once; until then at least one replica,
                   and one as soon as requests wait for a pool at zero; no scale-down on a partial load,
                   while replicas start (their capacity is not measured yet) or while a rollback cools
                   down; within [minReplicas, maxReplicas]
"""

import math
from dataclasses import dataclass, replace

from shoal.operator.router_client import RouterLoad
from shoal.operator.spec import KV_CACHE_USAGE, WAITING_PER_REPLICA, AutoscalingSpec, MetricTarget

# Signals that grow with load however big the pool is; the others (a queue, a latency) sit near zero
# until the pool is saturated, so below their target they cannot say how much smaller it could be.
PROPORTIONAL_SIGNALS = (KV_CACHE_USAGE,)
LOAD_WINDOW_S = 60.0  # the routers' window for the TTFT p95 and the requests answered


@dataclass(frozen=True)
class Recommendation:
    at: float
    replicas: int


@dataclass(frozen=True)
class ScaleChange:
    at: float
    delta: int  # replicas added (> 0) or removed (< 0)


@dataclass(frozen=True)
class ScaleHistory:
    """What the autoscaler remembers of a pool between passes: its recommendations (the
    stabilization windows), its own scale changes (the step limits), and when the pool was last busy
    (the idle period). Kept in the operator's memory, as the HPA keeps its own, so it starts empty
    when the operator restarts; a scale-down then waits a whole scale-down window, and the idle
    period starts over, so a restart never hastens one."""

    started: float | None = None  # the first decision since the operator started
    recommendations: tuple[Recommendation, ...] = ()
    changes: tuple[ScaleChange, ...] = ()
    last_busy: float | None = None  # the last pass whose load had a request in the routers' window

    def kept(self, now: float, spec: AutoscalingSpec) -> "ScaleHistory":
        """Without what no window or period reaches any more."""
        window = max(spec.scale_up.stabilization_window_s, spec.scale_down.stabilization_window_s)
        period = max(spec.scale_up.period_s, spec.scale_down.period_s)
        return replace(
            self,
            recommendations=tuple(r for r in self.recommendations if r.at > now - window),
            changes=tuple(c for c in self.changes if c.at > now - period),
        )


@dataclass(frozen=True)
class ScaleInputs:
    replicas: int  # spec.replicas now
    load: RouterLoad
    now: float
    rollout_active: bool = False  # a canary is live: the pool is not scaled to zero under it
    last_rollback_at: float | None = None


@dataclass(frozen=True)
class Reading:
    signal: str
    target: float
    value: float | None  # None: no figure (no ready replica to measure, no request timed)
    replicas: int | None  # what it recommends; None: it has no say


@dataclass(frozen=True)
class ScaleDecision:
    replicas: int
    reason: str  # the AutoscalingActive condition's
    message: str  # the deciding signal and its value, and what held the pool back
    readings: tuple[Reading, ...]
    history: ScaleHistory
    active: bool = True  # False: no router gave figures, the pool holds


def decide_scale(spec: AutoscalingSpec, seen: ScaleInputs, history: ScaleHistory) -> ScaleDecision:
    now, current, load = seen.now, seen.replicas, seen.load
    if history.started is None:
        history = ScaleHistory(started=now, last_busy=now)
    history = history.kept(now, spec)
    low, high = spec.min_replicas, spec.max_replicas
    if not low <= current <= high:  # as the HPA: back within bounds first, whatever the load says
        bound = min(max(current, low), high)
        reason = "AboveMaxReplicas" if current > high else "BelowMinReplicas"
        message = f"spec.replicas {current} is outside [{low}, {high}]"
        return ScaleDecision(bound, reason, message, (), _scaled(history, now, bound - current))
    if load.answered == 0:
        message = "no router gave the pool's load: " + "; ".join(load.missed)
        return ScaleDecision(current, "RouterLoadUnavailable", message, (), history, active=False)

    demand = load.held_requests + load.waiting_requests + load.running_requests
    busy = demand > 0 or load.requests > 0
    history = replace(history, last_busy=now if busy else history.last_busy)
    readings = tuple(_reading(metric, load, current, spec.tolerance) for metric in spec.metrics)
    deciding = max((r for r in readings if r.replicas is not None), key=lambda r: r.replicas, default=None)
    recommended = deciding.replicas if deciding else current
    said = _said(deciding, readings)
    direction, rules = ("up", spec.scale_up) if recommended > current else ("down", spec.scale_down)
    wanted = _stabilized(recommended, current, history, spec, now)
    held = None  # (reason, why) of the last rule that kept the pool from the recommendation
    if wanted != recommended:
        held = ("Stabilizing", f"held at {wanted} by the scale-{direction} window ({rules.stabilization_window_s:g}s)")
    stepped = _step_limited(wanted, current, history.changes, spec, now)
    if stepped != wanted:
        held = ("StepLimited", f"{stepped} for now: the scale-{direction} step limit ({rules.period_s:g}s periods)")
    wanted = stepped
    history = replace(history, recommendations=history.recommendations + (Recommendation(now, recommended),))

    idle_s = now - history.last_busy
    idle = not busy and idle_s >= spec.scale_to_zero_after_s and not seen.rollout_active
    if idle:
        wanted, held = low, None
        said = f"no request for {idle_s:.0f}s (scaleToZeroAfterSeconds {spec.scale_to_zero_after_s:g})"
    elif wanted < 1 and (current > 0 or demand > 0):
        # Not idle yet: one replica keeps serving; at zero, one comes as soon as requests wait.
        wanted = 1
        if current == 0:
            said = f"{demand} requests held or waiting with no replica"
    elif wanted < 1:
        said = "no replica, and no request waiting for one"
    if wanted < current and (guard := _scale_down_guard(spec, seen, idle)):
        wanted, held = current, guard
    bounded = min(max(wanted, low), high)
    if bounded != wanted:
        held = (
            "AtMaxReplicas" if wanted > high else "AtMinReplicas",
            f"{bounded} at most" if wanted > high else f"{bounded} at least",
        )
    reason = _reason(current, bounded, idle, held)
    message = said + (f"; {held[1]}" if held else "")
    return ScaleDecision(bounded, reason, message, readings, _scaled(history, now, bounded - current))


def _reading(metric: MetricTarget, load: RouterLoad, current: int, tolerance: float) -> Reading:
    ready = load.ready_replicas
    if metric.signal == WAITING_PER_REPLICA:
        # With no replica ready, what waits is what one would have to take (the scale from zero).
        base = max(ready, 1)
        value = (load.waiting_requests + load.held_requests) / base
    else:
        base = ready
        value = (load.kv_cache_usage if metric.signal == KV_CACHE_USAGE else load.ttft_p95_s) if ready else None
    if value is None:
        return Reading(metric.signal, metric.target, None, None)
    ratio = value / metric.target
    if abs(ratio - 1) <= tolerance:
        replicas = current
    elif ratio < 1 and metric.signal not in PROPORTIONAL_SIGNALS:
        replicas = None
    else:
        replicas = math.ceil(base * ratio - 1e-9)  # 1e-9: 3 x 0.9 / 0.3 is 9, not 10
    return Reading(metric.signal, metric.target, value, replicas)


def _scale_down_guard(spec: AutoscalingSpec, seen: ScaleInputs, idle: bool) -> tuple[str, str] | None:
    """Why the pool may not shrink now, if it may not."""
    load = seen.load
    if load.partial:  # the replicas that did not answer may have the requests
        return "PartialLoad", "no scale-down on a partial load: " + "; ".join(load.missed)
    if seen.last_rollback_at is not None and seen.now - seen.last_rollback_at < spec.rollback_cooldown_s:
        return "RollbackCooldown", f"no scale-down for {spec.rollback_cooldown_s:g}s after a rollback"
    if not idle and load.ready_replicas < seen.replicas:  # the starting ones' capacity is not in the figures
        return "ReplicasStarting", f"no scale-down while {load.ready_replicas}/{seen.replicas} replicas are ready"
    return None


def _said(deciding: Reading | None, readings: tuple[Reading, ...]) -> str:
    if deciding is None:
        shown = ", ".join(f"{r.signal} {_number(r.value)}" for r in readings if r.value is not None)
        return f"no signal above its target ({shown})" if shown else "no signal measured yet"
    return (
        f"{deciding.signal} {_number(deciding.value)} (target {_number(deciding.target)}) "
        f"recommends {deciding.replicas}"
    )


def _stabilized(recommended: int, current: int, history: ScaleHistory, spec: AutoscalingSpec, now: float) -> int:
    """The HPA's rule: up only as far as every recommendation of the scale-up window agrees, down
    only as far as every one of the scale-down window does."""
    up_window, down_window = spec.scale_up.stabilization_window_s, spec.scale_down.stabilization_window_s
    up = min([recommended] + [r.replicas for r in history.recommendations if r.at > now - up_window])
    down = max([recommended] + [r.replicas for r in history.recommendations if r.at > now - down_window])
    if now - history.started < down_window:  # the window's start was not seen: it may have held more
        down = max(down, current)
    return min(max(current, up), down)


def _step_limited(
    wanted: int, current: int, changes: tuple[ScaleChange, ...], spec: AutoscalingSpec, now: float
) -> int:
    """The HPA's rate limits: counted from the size at the start of the period, the larger step of
    the two limits (never a move back)."""
    if wanted > current:
        rules = spec.scale_up
        start = current - sum(c.delta for c in changes if c.delta > 0 and c.at > now - rules.period_s)
        limits = []
        if rules.max_step_replicas is not None:
            limits.append(start + rules.max_step_replicas)
        if rules.max_step_percent is not None:
            limits.append(math.ceil(start * (1 + rules.max_step_percent / 100)))
        return min(wanted, max(max(limits, default=wanted), current))
    if wanted < current:
        rules = spec.scale_down
        start = current - sum(c.delta for c in changes if c.delta < 0 and c.at > now - rules.period_s)
        limits = []
        if rules.max_step_replicas is not None:
            limits.append(start - rules.max_step_replicas)
        if rules.max_step_percent is not None:
            limits.append(math.floor(start * (1 - rules.max_step_percent / 100)))
        return max(wanted, min(min(limits, default=wanted), current))
    return wanted


def _reason(current: int, replicas: int, idle: bool, held: tuple[str, str] | None) -> str:
    if replicas > current:
        return "ScaledFromZero" if current == 0 else "ScaledUp"
    if replicas < current:
        return "Idle" if idle else "ScaledDown"
    if held:
        return held[0]
    return "Idle" if idle or replicas == 0 else "WithinTarget"


def _scaled(history: ScaleHistory, now: float, delta: int) -> ScaleHistory:
    if not delta:
        return history
    return replace(history, changes=history.changes + (ScaleChange(now, delta),))


def _number(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
