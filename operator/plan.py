"""The plan of one reconcile pass, as a pure function: a ModelPool, what exists, and what the
routers say, in; the children it should have, its route, its status and the events to post, out.

The pass itself (reconcile.py) gathers the inputs, applies the Plan (apply.py) and writes status;
nothing here talks to anything, so every transition is tested directly.
"""

import hashlib
import json
from dataclasses import dataclass, field, replace

from shoal.operator import children
from shoal.operator.autoscale.decide import ScaleHistory, ScaleInputs, decide_scale
from shoal.operator.autoscale.report import scaling_condition, scaling_events, scaling_status
from shoal.operator.revisions import pool_spec_of_template, revision_name, template_of
from shoal.operator.rollout import ABORT, PROMOTE, Event, Observations, RolloutState, RouterView, Wanted, advance
from shoal.operator.route import is_serving, pod_endpoints, route_for
from shoal.operator.router_client import RouterLoad
from shoal.operator.spec import PoolSpec, SpecError, parse_pool_spec
from shoal.operator.status import Condition, merge_conditions, phase_of, state_from_status, status_of_state
from shoal.operator.weights_rollout import Lifecycle, Progress, WeightsStep, decide, replicas_of
from shoal.route_contract import DEFAULT_RULES, SCRAPED_RULES, Route

ACTION_ANNOTATION = "shoal.dev/rollout-action"  # promote | abort; removed once acted on
TEMPLATE_HASH_ANNOTATION = "shoal.dev/template-hash"
# A warning condition, not one of status.CONDITION_TYPES: it neither sets the phase nor has a metric.
DEPRECATED_FIELDS = "DeprecatedFields"


@dataclass(frozen=True)
class PoolObject:
    ref: children.PoolRef
    generation: int
    spec: dict
    status: dict
    annotations: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Observed:
    deployments: list[dict]  # the pool's (by label)
    pods: list[dict]
    lifecycles: dict[str, Lifecycle | str] = field(default_factory=dict)  # pod -> GetLifecycle, or why not
    weights: Progress = Progress()  # the operator's weights step on the pool
    load: RouterLoad | None = None  # the routers' load for the pool, read only with spec.autoscaling
    scale_history: ScaleHistory = ScaleHistory()  # the autoscaler's memory of the pool


@dataclass(frozen=True)
class Plan:
    deployments: dict[str, dict]  # name -> desired object (created or brought in line)
    delete_deployments: tuple[str, ...]
    service: dict | None
    route: Route | None  # None: the routes stay as they are (the spec could not be read)
    status: dict
    events: tuple[Event, ...] = ()
    reset_verdict: str | None = None
    clear_action: bool = False
    weights_step: WeightsStep | None = None  # to start once the route is applied and status written
    scale: int | None = None  # spec.replicas to write through the scale subresource, before the children
    scale_history: ScaleHistory | None = None  # to keep for the next pass; None: nothing autoscales the pool


def plan_for(pool: PoolObject, observed: Observed, router: RouterView, now: float, drain_s: float) -> Plan:
    annotation = pool.annotations.get(ACTION_ANNOTATION)
    action = annotation if annotation in (PROMOTE, ABORT) else None
    try:
        spec = parse_pool_spec(pool.spec)
        desired = revision_name(spec)
    except SpecError as error:
        return _invalid(pool, str(error), now)
    before = state_from_status(pool.status)
    seen = _scale_inputs(spec, before, observed, now)
    scaled = decide_scale(spec.autoscaling, seen, observed.scale_history) if seen else None
    if scaled is not None:  # the rollout sizes its revisions from the autoscaled total
        spec = replace(spec, replicas=scaled.replicas)
    decision = advance(
        before,
        Wanted(desired, template_of(pool.spec)),
        spec,
        Observations(_ready_counts(observed.pods), router, action, now),
        drain_s,
    )
    events = decision.events
    if annotation is not None and action is None:
        events += (
            Event("Warning", "UnknownAction", f"{ACTION_ANNOTATION}={annotation!r} ignored: use promote or abort"),
        )
    state = decision.state
    try:
        wanted = {
            name: _with_hash(d) for name, d in _deployments(pool.ref, spec, state, decision.replicas(spec)).items()
        }
    except SpecError as error:  # a stored stable template this version cannot read
        return _invalid(pool, f"status.stableTemplate: {error}", now)
    keep = set(wanted) | {children.deployment_name(pool.ref, r.revision) for r in state.retiring}
    stale = tuple(sorted(d["metadata"]["name"] for d in observed.deployments if d["metadata"]["name"] not in keep))
    live = {r for r in (state.stable, state.canary) if r}
    weights = decide(
        spec.model.weights,
        replicas_of(observed.pods, live, observed.lifecycles),
        pool.status.get("weights"),
        observed.weights,
    )
    conditions = _conditions(spec, state, desired, observed.pods, router) + [weights.condition]
    status = status_of_state(state) | _counts(pool.ref, state, observed.pods)
    status["autoscaling"] = None
    if scaled is not None:
        conditions.append(scaling_condition(scaled))
        status["autoscaling"] = scaling_status(scaled, seen, pool.status.get("autoscaling"))
        events += scaling_events(scaled, seen)
    status |= {
        "observedGeneration": pool.generation,
        "phase": phase_of(conditions),
        "conditions": merge_conditions(pool.status.get("conditions"), conditions, now),
        "weights": weights.status,
    }
    return Plan(
        deployments=wanted,
        delete_deployments=stale,
        service=children.desired_service(pool.ref),
        route=route_for(pool.ref, spec, state, pod_endpoints(observed.pods, leave_out=weights.drained)),
        status=status,
        events=events + weights.events,
        reset_verdict=decision.reset_verdict,
        clear_action=annotation is not None,
        weights_step=weights.step,
        scale=scaled.replicas if scaled and scaled.replicas != seen.replicas else None,
        scale_history=scaled.history if scaled else None,
    )


def _scale_inputs(spec: PoolSpec, state: RolloutState, observed: Observed, now: float) -> ScaleInputs | None:
    """What the autoscaler decides from; None when nothing autoscales the pool."""
    if spec.autoscaling is None or observed.load is None:
        return None
    last_rollback = (state.last_rollback or {}).get("at")
    return ScaleInputs(spec.replicas, observed.load, now, state.canary is not None, last_rollback)


def _deployments(
    ref: children.PoolRef, spec: PoolSpec, state: RolloutState, replicas: dict[str, int]
) -> dict[str, dict]:
    out = {}
    for revision, count in replicas.items():
        revision_spec = (
            spec
            if revision == state.canary or state.stable_template is None
            else pool_spec_of_template(state.stable_template)
        )
        deployment = children.desired_deployment(ref, revision, revision_spec, count)
        out[deployment["metadata"]["name"]] = deployment
    return out


def _with_hash(deployment: dict) -> dict:
    """Marks the pod template's hash, so a changed template is noticed without a deep compare."""
    digest = hashlib.sha256(json.dumps(deployment["spec"]["template"], sort_keys=True).encode()).hexdigest()[:16]
    deployment["metadata"]["annotations"] = {TEMPLATE_HASH_ANNOTATION: digest}
    return deployment


def _ready_counts(pods: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for pod in pods:
        revision = (pod["metadata"].get("labels") or {}).get(children.REVISION_LABEL)
        if revision and is_serving(pod):
            counts[revision] = counts.get(revision, 0) + 1
    return counts


def _counts(ref: children.PoolRef, state: RolloutState, pods: list[dict]) -> dict:
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    stable = [p for p in live if (p["metadata"].get("labels") or {}).get(children.REVISION_LABEL) == state.stable]
    return {
        "replicas": len(stable),
        "readyReplicas": _ready_counts(stable).get(state.stable, 0),
        "selector": children.pool_selector(ref),
    }


def _conditions(
    spec: PoolSpec, state: RolloutState, desired: str, pods: list[dict], router: RouterView
) -> list[Condition]:
    ready = _ready_counts(pods)
    stable_ready = ready.get(state.stable, 0)
    conditions = [
        Condition(
            "Ready",
            stable_ready >= spec.replicas,
            "ReplicasReady" if stable_ready >= spec.replicas else "ReplicasNotReady",
            f"{stable_ready}/{spec.replicas} replicas of {state.stable} ready",
        ),
        _progressing(spec, state, ready, router),
        Condition(
            "Degraded",
            not router.reachable,
            "RouterUnreachable" if not router.reachable else "AsExpected",
            f"router admin API: {router.error}; rollout paused" if not router.reachable else "",
        ),
    ]
    conditions.append(_metrics_scraped(state, router))
    if state.rolled_back and desired == state.rolled_back and state.last_rollback:
        conditions.append(Condition("RolledBack", True, "CanaryRolledBack", _rollback_message(state.last_rollback)))
    else:
        conditions.append(Condition("RolledBack", False, "NoRollback", ""))
    if spec.deprecated:  # only while it applies: most pools never carry it
        conditions.append(Condition(DEPRECATED_FIELDS, True, "DeprecatedFieldsSet", "; ".join(spec.deprecated)))
    return conditions


def _progressing(spec: PoolSpec, state: RolloutState, ready: dict[str, int], router: RouterView) -> Condition:
    if not state.canary:
        return Condition("Progressing", False, "Idle", f"stable revision {state.stable}")
    steps = spec.rollout.steps
    if state.step >= len(steps):
        return Condition(
            "Progressing",
            True,
            "Promoting",
            f"canary {state.canary}: {ready.get(state.canary, 0)}/{spec.replicas} replicas ready before it "
            "takes the pool",
        )
    target = steps[state.step]
    if state.canary_weight != target.weight:
        return Condition(
            "Progressing",
            True,
            "WaitingForCanary",
            f"step {state.step + 1}/{len(steps)}: canary {state.canary} scaling for {target.weight}%",
        )
    samples = f"{router.canary_requests}/{spec.rollout.analysis.min_samples} samples"
    if router.blind_to(state.canary):
        samples += "; held while the router cannot read the canary's /metrics (see MetricsScraped)"
    return Condition(
        "Progressing",
        True,
        "CanaryStep",
        f"step {state.step + 1}/{len(steps)}: canary {state.canary} at {target.weight}%, {samples}",
    )


def _metrics_scraped(state: RolloutState, router: RouterView) -> Condition:
    """Whether the router reads the /metrics of every runtime of the pool's live revisions: the rules
    that judge a canary from them are blind to the runtimes it cannot read (no false rollback comes
    of it; the rollout holds instead)."""
    if not router.reachable:
        return Condition("MetricsScraped", False, "RouterUnreachable", "the router's admin API did not answer")
    failing = [
        f"{health.failing}/{health.endpoints} runtimes of {role} {revision}"
        for role, revision in (("stable", state.stable), ("canary", state.canary))
        if revision and (health := router.unscraped.get(revision))
    ]
    if not failing:
        return Condition("MetricsScraped", True, "ScrapesAnswered", "")
    rules = ", ".join(rule.name for rule in DEFAULT_RULES if isinstance(rule, SCRAPED_RULES))
    return Condition(
        "MetricsScraped",
        False,
        "ScrapeFailing",
        f"the router cannot read /metrics of {'; '.join(failing)}: the {rules} rules cannot judge them"
        + (" and the rollout holds its step" if router.blind_to(state.canary) else ""),
    )


def _rollback_message(last: dict) -> str:
    rules = ", ".join(r.get("rule", "?") for r in last.get("rules") or ())
    return f"canary {last.get('revision')} at {last.get('weight')}%: {last.get('reason')}" + (
        f" (rules: {rules})" if rules else ""
    )


def _invalid(pool: PoolObject, message: str, now: float) -> Plan:
    """Leaves children and routes as they are; says why in status, once per distinct message."""
    previous = {c.get("type"): c for c in pool.status.get("conditions") or ()}
    conditions = [
        Condition(c["type"], c.get("status") == "True", c.get("reason", ""), c.get("message", ""))
        for c in previous.values()
        if c.get("type") != "Degraded"
    ]
    conditions.append(Condition("Degraded", True, "InvalidSpec", message))
    repeated = previous.get("Degraded", {}).get("message") == message
    return Plan(
        deployments={},
        delete_deployments=(),
        service=None,
        route=None,
        status={
            "observedGeneration": pool.generation,
            "phase": "Degraded",
            "conditions": merge_conditions(pool.status.get("conditions"), conditions, now),
        },
        events=() if repeated else (Event("Warning", "InvalidSpec", message),),
    )
