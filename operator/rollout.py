"""The rollout state machine: from the stable revision to a new one, step by step, or back.

    new revision -> canary scaled for step 1, ready -> weight 1, pause, enough samples -> step 2 ...
    -> after the last step: canary scaled to full size, ready -> promoted (the old stable drains,
       then goes)
    the router pulls the canary back (a rollback rule broke), the canary is not ready within the
    progress deadline, or someone asks (annotation) -> aborted: weight 0, canary drains and goes,
    the revision is remembered and not retried until the spec names another one.

`advance` is pure: state in (it lives in the ModelPool's status, so an operator restarted
mid-rollout carries on where it was), observations in, the next state out. The router judges
the canary continuously; the operator only reads its verdicts and sample counts, and holds a step
while the router cannot read the canary's /metrics.
"""

import math
from dataclasses import dataclass, field, replace

from shoal.operator.spec import PoolSpec
from shoal.route_contract import ScrapeHealth, Verdict, breach_to_json

PROMOTE, ABORT = "promote", "abort"
DEFAULT_DRAIN_S = 30.0


@dataclass(frozen=True)
class Retiring:
    revision: str
    at: float  # when its Deployment may go: requests in flight there have had time to finish


@dataclass(frozen=True)
class RolloutState:
    stable: str | None = None
    stable_template: dict | None = None
    canary: str | None = None
    canary_weight: int = 0
    step: int = 0  # index into spec.rollout.steps; == len(steps) while promoting
    step_started_at: float | None = None  # the current step's weight took effect
    waiting_since: float | None = None  # started waiting for the canary to be ready for this step
    rolled_back: str | None = None  # not retried while the spec names it
    last_rollback: dict | None = None
    retiring: tuple[Retiring, ...] = ()


@dataclass(frozen=True)
class RouterView:
    """What the routers said about this pool (all replicas together)."""

    reachable: bool
    error: str | None = None  # why not reachable
    verdicts: dict[str, Verdict] = field(default_factory=dict)  # revision -> the router's verdict on it
    canary_requests: int = 0  # requests the canary answered since its step began
    # Revisions some of whose runtimes' /metrics the router cannot read: the rules that judge from
    # them (route_contract.SCRAPED_RULES) cannot see those runtimes.
    unscraped: dict[str, ScrapeHealth] = field(default_factory=dict)

    def blind_to(self, revision: str | None) -> bool:
        return revision in self.unscraped


@dataclass(frozen=True)
class Wanted:
    """The revision the spec names, and the pod template it runs."""

    revision: str
    template: dict


@dataclass(frozen=True)
class Observations:
    """What one pass saw: ready replicas per revision, the routers' view, an annotation's action."""

    ready: dict[str, int]
    router: RouterView
    action: str | None  # PROMOTE, ABORT or None
    now: float


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    state: RolloutState
    events: tuple[Event, ...] = ()
    reset_verdict: str | None = None  # a revision tried again: the router's old verdict on it goes

    def replicas(self, spec: PoolSpec) -> dict[str, int]:
        """Replicas per live revision (retiring ones keep what they have until they go)."""
        state = self.state
        wanted = {state.stable: spec.replicas} if state.stable else {}
        if state.canary:
            steps = spec.rollout.steps
            weight = 100 if state.step >= len(steps) else steps[state.step].weight
            wanted[state.canary] = canary_replicas(spec.replicas, weight)
        return wanted


def canary_replicas(replicas: int, weight: int) -> int:
    """Enough replicas to carry `weight` percent of the pool's traffic, at least one."""
    return max(1, math.ceil(replicas * weight / 100))


def advance(
    state: RolloutState, wanted: Wanted, spec: PoolSpec, seen: Observations, drain_s: float = DEFAULT_DRAIN_S
) -> Decision:
    events: list[Event] = []
    desired, desired_template, now = wanted.revision, wanted.template, seen.now
    state = replace(state, retiring=tuple(r for r in state.retiring if r.at > now))
    if state.stable is None:
        state = replace(state, stable=desired, stable_template=desired_template)
        events.append(Event("Normal", "StableCreated", f"revision {desired} serves the pool"))
    if desired == state.stable:
        if state.canary:
            events.append(
                Event(
                    "Normal",
                    "RolloutCancelled",
                    f"the spec is back at the stable revision {desired}; canary {state.canary} withdrawn",
                )
            )
            state = _without_canary(state, now + drain_s)
        return Decision(state, tuple(events))
    if desired == state.rolled_back:
        return Decision(state, tuple(events))  # waits for a spec naming another revision
    if state.canary != desired:
        if state.canary:
            events.append(Event("Normal", "RolloutSuperseded", f"canary {state.canary} replaced by {desired}"))
            state = _without_canary(state, now + drain_s)
        state = replace(
            state, canary=desired, canary_weight=0, step=0, step_started_at=None, waiting_since=now, rolled_back=None
        )
        events.append(Event("Normal", "RolloutStarted", f"canary {desired} against stable {state.stable}"))
        # The router may still hold a verdict from an earlier try of this revision: it is cleared
        # first, and the canary judged from the next pass on.
        return Decision(state, tuple(events), reset_verdict=desired if desired in seen.router.verdicts else None)
    return _step(state, desired_template, spec, seen, drain_s, events)


def _step(
    state: RolloutState, template: dict, spec: PoolSpec, seen: Observations, drain_s: float, events: list[Event]
) -> Decision:
    steps = spec.rollout.steps
    ready, router, action, now = seen.ready, seen.router, seen.action, seen.now
    verdict = router.verdicts.get(state.canary)
    if verdict is not None:
        return _abort(state, verdict.reason or "the router rolled it back", verdict, now, drain_s, events)
    if action == ABORT:
        return _abort(state, "aborted by annotation", None, now, drain_s, events)
    if action == PROMOTE and state.step < len(steps):
        events.append(Event("Normal", "PromotedByAnnotation", f"canary {state.canary}: remaining steps skipped"))
        state = replace(state, step=len(steps), step_started_at=None, waiting_since=now)
    canary_ready = ready.get(state.canary, 0)
    if state.step >= len(steps):  # promoting: the canary takes the whole pool once it is full size
        if canary_ready >= spec.replicas:
            events.append(Event("Normal", "Promoted", f"revision {state.canary} is stable; {state.stable} drains"))
            retiring = state.retiring + (Retiring(state.stable, now + drain_s),)
            state = RolloutState(
                stable=state.canary,
                stable_template=template,
                rolled_back=state.rolled_back,
                last_rollback=state.last_rollback,
                retiring=retiring,
            )
            return Decision(state, tuple(events))
        return _deadline(state, now, drain_s, spec, events)
    target = steps[state.step]
    if state.canary_weight != target.weight:
        if canary_ready >= canary_replicas(spec.replicas, target.weight) and router.reachable:
            events.append(
                Event(
                    "Normal",
                    "CanaryStep",
                    f"step {state.step + 1}/{len(steps)}: canary {state.canary} takes {target.weight}%",
                )
            )
            return Decision(
                replace(state, canary_weight=target.weight, step_started_at=now, waiting_since=None), tuple(events)
            )
        return _deadline(state, now, drain_s, spec, events)
    paused = now - state.step_started_at >= target.pause_s
    # A canary the router cannot fully judge stays at its weight (neither a rollback nor a step on),
    # as Argo Rollouts does with an inconclusive analysis; the MetricsScraped condition says why.
    judged = router.reachable and not router.blind_to(state.canary)
    if paused and judged and router.canary_requests >= spec.rollout.analysis.min_samples:
        state = replace(state, step=state.step + 1, step_started_at=None, waiting_since=now)
        return _step(state, template, spec, replace(seen, action=None), drain_s, events)
    return Decision(state, tuple(events))


def _deadline(state: RolloutState, now: float, drain_s: float, spec: PoolSpec, events: list) -> Decision:
    waited = now - (state.waiting_since if state.waiting_since is not None else now)
    if waited > spec.rollout.progress_deadline_s:
        reason = f"canary not ready within the progress deadline ({spec.rollout.progress_deadline_s:g}s)"
        return _abort(state, reason, None, now, drain_s, events)
    return Decision(state, tuple(events))


def _abort(
    state: RolloutState, reason: str, verdict: Verdict | None, now: float, drain_s: float, events: list
) -> Decision:
    # The record goes into status.lastRollback as it is: the rules broken in the router's own JSON.
    record = {"revision": state.canary, "reason": reason, "weight": state.canary_weight, "at": now}
    if verdict is not None:
        record["rules"] = [breach_to_json(b) for b in verdict.breaches]
    events.append(
        Event("Warning", "RolledBack", f"canary {state.canary} rolled back at {state.canary_weight}%: {reason}")
    )
    state = replace(_without_canary(state, now + drain_s), rolled_back=record["revision"], last_rollback=record)
    return Decision(state, tuple(events))


def _without_canary(state: RolloutState, retire_at: float) -> RolloutState:
    return replace(
        state,
        canary=None,
        canary_weight=0,
        step=0,
        step_started_at=None,
        waiting_since=None,
        retiring=state.retiring + (Retiring(state.canary, retire_at),),
    )
