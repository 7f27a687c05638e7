"""A scale decision as the pool shows it, pure: status.autoscaling (the replicas wanted, when they
last changed, each signal against its target), the AutoscalingActive condition (why, in its reason
and message), and a ScaledUp or ScaledDown Event when the replicas change."""

from shoal.operator.autoscale.decide import ScaleDecision, ScaleInputs
from shoal.operator.rollout import Event
from shoal.operator.status import Condition, timestamp

AUTOSCALING_ACTIVE = "AutoscalingActive"  # False only while no router gives the pool's load
SCALED_UP, SCALED_DOWN = "ScaledUp", "ScaledDown"


def scaling_status(decision: ScaleDecision, seen: ScaleInputs, previous: dict | None) -> dict:
    """Every field, None where absent (a merge patch then removes it)."""
    scaled = decision.replicas != seen.replicas
    return {
        "desiredReplicas": decision.replicas,
        "readyReplicas": seen.load.ready_replicas if seen.load.answered else None,
        "heldRequests": seen.load.held_requests if seen.load.answered else None,
        "lastScaleTime": timestamp(seen.now) if scaled else (previous or {}).get("lastScaleTime"),
        "metrics": [
            {
                "type": reading.signal,
                "target": reading.target,
                **({"value": reading.value} if reading.value is not None else {}),
                **({"recommendedReplicas": reading.replicas} if reading.replicas is not None else {}),
            }
            for reading in decision.readings
        ]
        or None,
    }


def scaling_condition(decision: ScaleDecision) -> Condition:
    return Condition(AUTOSCALING_ACTIVE, decision.active, decision.reason, decision.message)


def scaling_events(decision: ScaleDecision, seen: ScaleInputs) -> tuple[Event, ...]:
    if decision.replicas == seen.replicas:
        return ()
    reason = SCALED_UP if decision.replicas > seen.replicas else SCALED_DOWN
    return (Event("Normal", reason, f"replicas {seen.replicas} -> {decision.replicas}: {decision.message}"),)
