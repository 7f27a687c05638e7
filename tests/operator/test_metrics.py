"""The operator's series: numbers from the plan a pass applied, and series gone with their pool."""

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shoal.operator.metrics import OperatorMetrics, sample_of
from shoal.operator.plan import Plan
from shoal.operator.rollout import Event


def pod(revision: str, ready: bool, terminating: bool = False) -> dict:
    metadata = {
        "labels": {"shoal.dev/revision": revision},
        **({"deletionTimestamp": "2026-11-23T12:00:00Z"} if terminating else {}),
    }
    return {"metadata": metadata, "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def plan(status: dict, events: tuple[Event, ...] = (), replicas: tuple[int, ...] = (2, 1)) -> Plan:
    deployments = {f"chat-r{i}": {"spec": {"replicas": n}} for i, n in enumerate(replicas)}
    return Plan(deployments=deployments, delete_deployments=(), service=None, route=None, status=status, events=events)


ROLLING = {
    "canaryRevision": "v2-abc123",
    "canaryWeight": 25,
    "stepStartedAt": "2026-11-23T12:00:10Z",
    "waitingSince": "2026-11-23T12:00:00Z",
    "conditions": [
        {"type": "Ready", "status": "True"},
        {"type": "Progressing", "status": "True"},
        {"type": "Degraded", "status": "False"},
    ],
}


def samples(metrics: OperatorMetrics) -> dict[tuple, float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_a_sample_counts_wanted_and_serving_replicas_and_the_rollouts_last_move():
    sample = sample_of(
        plan(ROLLING), [pod("v1", True), pod("v1", True), pod("v2", False), pod("v1", True, terminating=True)]
    )
    assert (sample.desired_replicas, sample.ready_replicas) == (3, 2)
    assert sample.rollout_active and sample.canary_weight == 25
    assert sample.last_progress == 1795435210.0  # the later of the step's start and the wait's
    assert sample.conditions == {"Ready": True, "Progressing": True, "Degraded": False}
    assert sample.outcomes == ()


def test_ended_rollouts_are_counted_by_outcome():
    events = (
        Event("Normal", "CanaryStep", "..."),
        Event("Normal", "Promoted", "..."),
        Event("Warning", "RolledBack", "..."),
    )
    assert sample_of(plan({}, events), []).outcomes == ("promoted", "rolled_back")


def test_series_follow_the_pool_and_go_with_it():
    metrics = OperatorMetrics()
    metrics.record(
        "default.chat", sample_of(plan(ROLLING, (Event("Warning", "RolledBack", "..."),)), [pod("v1", True)])
    )
    seen = samples(metrics)
    pool = ("pool", "default.chat")
    assert seen["shoal:operator_pool_replicas_desired", (pool,)] == 3
    assert seen["shoal:operator_pool_replicas_ready", (pool,)] == 1
    assert seen["shoal:operator_rollout_active", (pool,)] == 1
    assert seen["shoal:operator_rollout_canary_weight_percent", (pool,)] == 25
    assert seen["shoal:operator_pool_condition", (("condition", "RolledBack"), pool)] == 0
    assert seen["shoal:operator_pool_condition", (("condition", "Ready"), pool)] == 1
    assert seen["shoal:operator_rollouts_total", (("outcome", "rolled_back"), pool)] == 1

    metrics.record("default.chat", sample_of(plan({"canaryWeight": 0}), []))  # the rollout ended
    seen = samples(metrics)
    assert seen["shoal:operator_rollout_active", (pool,)] == 0
    assert ("shoal:operator_rollout_last_progress_timestamp_seconds", (pool,)) not in seen

    metrics.forget("default.chat")
    assert not [key for key in samples(metrics) if pool in key[1]]


def test_the_autoscalers_series_follow_its_decisions_and_go_without_it():
    scaled = {
        "autoscaling": {
            "desiredReplicas": 6,
            "metrics": [
                {"type": "waitingPerReplica", "target": 2.0, "value": 4.5, "recommendedReplicas": 6},
                {"type": "ttftP95", "target": 1.0},  # no figure yet
            ],
        }
    }
    metrics = OperatorMetrics()
    metrics.record("default.chat", sample_of(plan(scaled, (Event("Normal", "ScaledUp", "..."),)), []))
    seen = samples(metrics)
    pool = ("pool", "default.chat")
    assert seen["shoal:operator_autoscaler_desired_replicas", (pool,)] == 6
    assert seen["shoal:operator_autoscaler_signal_value", (pool, ("signal", "waitingPerReplica"))] == 4.5
    assert seen["shoal:operator_autoscaler_signal_target", (pool, ("signal", "ttftP95"))] == 1.0
    assert ("shoal:operator_autoscaler_signal_value", (pool, ("signal", "ttftP95"))) not in seen
    assert seen["shoal:operator_autoscaler_scale_events_total", (("direction", "up"), pool)] == 1
    assert seen["shoal:operator_autoscaler_scale_events_total", (("direction", "down"), pool)] == 0

    metrics.record("default.chat", sample_of(plan({"autoscaling": None}), []))  # spec.autoscaling removed
    assert not [key for key in samples(metrics) if key[0].startswith("shoal:operator_autoscaler_")]
