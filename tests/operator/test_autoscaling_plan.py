"""The autoscaler in a reconcile pass's plan (pure): its replicas written through the scale
subresource and followed by the Deployments, a rollout's canary keeping its share of the
autoscaled total, and the decision shown in status.autoscaling, the AutoscalingActive condition
and an Event naming the signal and its value."""

from shoal.operator.autoscale.decide import ScaleHistory
from shoal.operator.plan import Observed, plan_for
from shoal.operator.router_client import RouterLoad
from tests.operator.test_plan import OK, SPEC, T0, pool

AUTOSCALED = {
    **SPEC,
    "replicas": 2,
    "autoscaling": {
        "maxReplicas": 10,
        "metrics": [{"type": "waitingPerReplica", "target": 2}],
        "behavior": {"scaleUp": {"maxStepReplicas": 10}, "scaleDown": {"stabilizationWindowSeconds": 0}},
    },
}
QUEUED = RouterLoad(ready_replicas=2, replicas=2, waiting_requests=16, running_requests=8, requests=40)
HISTORY = ScaleHistory(started=T0 - 3600, last_busy=T0)


def replicas_by_revision(plan) -> dict[str, int]:
    return {name: d["spec"]["replicas"] for name, d in plan.deployments.items()}


def conditions(plan) -> dict[str, dict]:
    return {c["type"]: c for c in plan.status["conditions"]}


def test_a_queue_scales_the_pool_through_its_scale_subresource_and_says_why():
    plan = plan_for(pool(AUTOSCALED), Observed([], [], load=QUEUED, scale_history=HISTORY), OK, T0, 30)
    assert plan.scale == 8  # 16 waiting / target 2
    stable = plan.status["stableRevision"]
    assert replicas_by_revision(plan) == {f"chat-{stable}": 8}  # the Deployment follows at once
    assert plan.status["autoscaling"] == {
        "desiredReplicas": 8,
        "readyReplicas": 2,
        "heldRequests": 0,
        "lastScaleTime": "1970-01-24T03:33:20Z",
        "metrics": [{"type": "waitingPerReplica", "target": 2.0, "value": 8.0, "recommendedReplicas": 8}],
    }
    active = conditions(plan)["AutoscalingActive"]
    assert (active["status"], active["reason"]) == ("True", "ScaledUp")
    assert active["message"] == "waitingPerReplica 8 (target 2) recommends 8"
    ((event,),) = [[e for e in plan.events if e.reason == "ScaledUp"]]
    assert event.type == "Normal" and event.message == "replicas 2 -> 8: waitingPerReplica 8 (target 2) recommends 8"
    assert plan.scale_history.changes[-1].delta == 6  # kept by the pass for the step limits


def test_the_next_pass_holds_and_keeps_the_last_scale_time():
    first = plan_for(pool(AUTOSCALED), Observed([], [], load=QUEUED, scale_history=HISTORY), OK, T0, 30)
    scaled = {**AUTOSCALED, "replicas": 8}
    calm = RouterLoad(ready_replicas=8, replicas=8, waiting_requests=16, requests=40)  # 2 a replica: on target
    plan = plan_for(
        pool(scaled, first.status), Observed([], [], load=calm, scale_history=first.scale_history), OK, T0 + 15, 30
    )
    assert plan.scale is None and [e for e in plan.events if e.reason.startswith("Scaled")] == []
    assert plan.status["autoscaling"]["lastScaleTime"] == first.status["autoscaling"]["lastScaleTime"]
    assert conditions(plan)["AutoscalingActive"]["reason"] == "WithinTarget"


def test_during_a_rollout_the_canary_keeps_its_share_of_the_autoscaled_total():
    first = plan_for(pool(AUTOSCALED), Observed([], [], load=QUEUED, scale_history=HISTORY), OK, T0, 30)
    stable = first.status["stableRevision"]
    changed = {**AUTOSCALED, "model": {"source": "embedded", "revision": "v2"}}
    plan = plan_for(pool(changed, first.status), Observed([], [], load=QUEUED, scale_history=HISTORY), OK, T0 + 1, 30)
    canary = plan.status["canaryRevision"]
    assert plan.scale == 8
    assert replicas_by_revision(plan) == {f"chat-{stable}": 8, f"chat-{canary}": 2}  # 20 % of 8, rounded up


def test_a_recent_rollback_keeps_the_pool_from_shrinking():
    quiet = RouterLoad(ready_replicas=6, replicas=6, requests=40)
    status = {
        "lastRollback": {"revision": "v2-abc123", "reason": "error_rate", "weight": 20, "at": "1970-01-24T03:30:00Z"}
    }
    kv = {**AUTOSCALED["autoscaling"], "metrics": [{"type": "kvCacheUsage", "target": 0.8}]}
    spec = {**AUTOSCALED, "replicas": 6, "autoscaling": kv}
    plan = plan_for(pool(spec, status), Observed([], [], load=quiet, scale_history=HISTORY), OK, T0, 30)
    assert plan.scale is None and conditions(plan)["AutoscalingActive"]["reason"] == "RollbackCooldown"
    later = plan_for(pool(spec, status), Observed([], [], load=quiet, scale_history=HISTORY), OK, T0 + 300, 30)
    assert later.scale == 1


def test_without_the_routers_load_the_pool_holds_and_says_so():
    unread = RouterLoad(answered=0, missed=("http://10.0.0.9:8002: no load figures for team-a.chat (HTTP 404)",))
    plan = plan_for(pool(AUTOSCALED), Observed([], [], load=unread, scale_history=HISTORY), OK, T0, 30)
    assert plan.scale is None and replicas_by_revision(plan) == {f"chat-{plan.status['stableRevision']}": 2}
    active = conditions(plan)["AutoscalingActive"]
    assert (active["status"], active["reason"]) == ("False", "RouterLoadUnavailable")
    assert "HTTP 404" in active["message"]
    assert plan.status["autoscaling"]["desiredReplicas"] == 2 and plan.status["autoscaling"]["metrics"] is None


def test_a_pool_without_autoscaling_has_no_trace_of_it():
    first = plan_for(pool(AUTOSCALED), Observed([], [], load=QUEUED, scale_history=HISTORY), OK, T0, 30)
    plan = plan_for(pool({**SPEC, "replicas": 8}, first.status), Observed([], []), OK, T0 + 1, 30)
    assert plan.scale is None and plan.scale_history is None
    assert plan.status["autoscaling"] is None  # removed from status by the merge patch
    assert "AutoscalingActive" not in conditions(plan)
