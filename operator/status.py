"""The ModelPool's status: the rollout state kept there (read back after a restart) and the
conditions users and tools read (Ready, Progressing, Degraded, RolledBack, MetricsScraped,
WeightsUpdated, and AutoscalingActive with spec.autoscaling), in the shape core Kubernetes objects use."""

from dataclasses import dataclass
from datetime import UTC, datetime

from shoal.operator.rollout import Retiring, RolloutState

CONDITION_TYPES = (
    "Ready",
    "Progressing",
    "Degraded",
    "RolledBack",
    "MetricsScraped",
    "WeightsUpdated",
    "AutoscalingActive",
)


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str


def timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def state_from_status(status: dict) -> RolloutState:
    last = status.get("lastRollback")
    return RolloutState(
        stable=status.get("stableRevision"),
        stable_template=status.get("stableTemplate"),
        canary=status.get("canaryRevision"),
        canary_weight=int(status.get("canaryWeight") or 0),
        step=int(status.get("currentStep") or 0),
        step_started_at=seconds(status.get("stepStartedAt")),
        waiting_since=seconds(status.get("waitingSince")),
        rolled_back=status.get("rolledBackRevision"),
        last_rollback={**last, "at": seconds(last.get("at"))} if last else None,
        retiring=tuple(Retiring(r["revision"], seconds(r["at"])) for r in status.get("retiring") or ()),
    )


def status_of_state(state: RolloutState) -> dict:
    """Every rollout field, with None for an absent one (a merge patch then removes it)."""
    last = state.last_rollback
    return {
        "stableRevision": state.stable,
        "stableTemplate": state.stable_template,
        "canaryRevision": state.canary,
        "canaryWeight": state.canary_weight,
        "currentStep": state.step if state.canary else None,
        "stepStartedAt": timestamp(state.step_started_at) if state.step_started_at is not None else None,
        "waitingSince": timestamp(state.waiting_since) if state.waiting_since is not None else None,
        "rolledBackRevision": state.rolled_back,
        "lastRollback": {**last, "at": timestamp(last["at"])} if last else None,
        "retiring": [{"revision": r.revision, "at": timestamp(r.at)} for r in state.retiring] or None,
    }


def merge_conditions(previous: list[dict] | None, current: list[Condition], now: float) -> list[dict]:
    """lastTransitionTime moves only when a condition's status changes."""
    before = {c.get("type"): c for c in previous or ()}
    merged = []
    for condition in current:
        status = "True" if condition.status else "False"
        old = before.get(condition.type)
        changed = old is None or old.get("status") != status
        merged.append(
            {
                "type": condition.type,
                "status": status,
                "reason": condition.reason,
                "message": condition.message,
                "lastTransitionTime": timestamp(now) if changed else old.get("lastTransitionTime", timestamp(now)),
            }
        )
    return merged


def phase_of(conditions: list[Condition]) -> str:
    by_type = {c.type: c.status for c in conditions}
    if by_type.get("Degraded"):
        return "Degraded"
    if by_type.get("Progressing"):
        return "Progressing"
    if by_type.get("RolledBack"):
        return "RolledBack"
    return "Ready" if by_type.get("Ready") else "Pending"
