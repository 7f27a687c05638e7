"""The in-place weights roll, a pure decision: which replica next, and what status and events say."""

from shoal.operator.children import GRPC_PORT, PoolRef
from shoal.operator.plan import Observed, PoolObject, plan_for
from shoal.operator.revisions import revision_name, template_of
from shoal.operator.rollout import RouterView
from shoal.operator.spec import WeightsSpec, parse_pool_spec
from shoal.operator.weights_rollout import (
    RESUME,
    UPDATE,
    Lifecycle,
    Outcome,
    Progress,
    Replica,
    WeightsStep,
    decide,
    watched,
)

V2 = WeightsSpec("v2", "/models/v2")
REV = "v1-abc123"


def replica(name: str, version: str | None = "initial", *, paused=False, serving=True, revision=REV) -> Replica:
    lifecycle = Lifecycle(version, paused) if version is not None else None
    return Replica(name, revision, f"10.0.0.{name[-1]}:{GRPC_PORT}", serving, lifecycle)


def update(name: str, drain=True, weights=V2) -> WeightsStep:
    return WeightsStep(UPDATE, name, f"10.0.0.{name[-1]}:{GRPC_PORT}", weights.version, weights.path, drain)


def condition(decision) -> tuple[bool, str]:
    return decision.condition.status, decision.condition.reason


def test_every_replica_at_the_version_needs_nothing():
    decision = decide(V2, [replica("p1", "v2"), replica("p2", "v2")], None, Progress())
    assert decision.step is None and decision.drained is None and decision.events == ()
    assert condition(decision) == (True, "Updated") and decision.condition.message == "2/2 replicas run weights v2"
    assert decision.status == {
        "version": "v2",
        "path": "/models/v2",
        "updated": 2,
        "replicas": [{"pod": "p1", "version": "v2"}, {"pod": "p2", "version": "v2"}],
        "updating": None,
        "rejected": None,
    }


def test_the_one_behind_is_updated_out_of_the_route():
    decision = decide(V2, [replica("p1", "v2"), replica("p2")], None, Progress())
    assert decision.step == update("p2") and decision.drained == f"10.0.0.2:{GRPC_PORT}"
    assert condition(decision) == (False, "Updating") and "1/2 replicas run weights v2; updating p2" in (
        decision.condition.message
    )
    assert decision.status["updating"] == "p2" and decision.status["updated"] == 1


def test_two_behind_go_one_at_a_time():
    replicas = [replica("p1"), replica("p2"), replica("p3", "v2")]
    first = decide(V2, replicas, None, Progress())
    assert first.step == update("p1")
    # While it runs, nothing else starts, and it stays out of the route.
    during = decide(
        V2, [replica("p1", "v1", paused=True), replica("p2"), replica("p3", "v2")], None, Progress(first.step)
    )
    assert during.step is None and during.drained == first.step.target and during.status["updating"] == "p1"
    assert during.status["replicas"][0] == {"pod": "p1", "version": "v1", "paused": True}
    after = decide(
        V2,
        [replica("p1", "v2"), replica("p2"), replica("p3", "v2")],
        during.status,
        Progress(finished=(first.step, Outcome(True))),
    )
    assert after.step == update("p2") and [e.reason for e in after.events] == ["WeightsUpdated"]
    assert after.events[0].message == "p1 runs weights v2"
    done = decide(V2, [replica("p1", "v2"), replica("p2", "v2"), replica("p3", "v2")], after.status, Progress())
    assert done.step is None and condition(done) == (True, "Updated")


def test_a_rejected_update_is_reported_and_not_tried_again_until_the_spec_changes():
    step = update("p1")
    finished = Progress(finished=(step, Outcome(False, rejected=True, message="INVALID_ARGUMENT: tensor 'x' unknown")))
    rejected = decide(V2, [replica("p1"), replica("p2")], None, finished)
    assert rejected.step is None and rejected.drained is None
    assert condition(rejected) == (False, "UpdateRejected")
    assert "p1 refused weights v2 at /models/v2: INVALID_ARGUMENT: tensor 'x' unknown" in rejected.condition.message
    assert rejected.status["rejected"] == {
        "version": "v2",
        "path": "/models/v2",
        "pod": "p1",
        "message": "INVALID_ARGUMENT: tensor 'x' unknown",
    }
    assert [(e.type, e.reason) for e in rejected.events] == [("Warning", "WeightsRejected")]
    later = decide(V2, [replica("p1"), replica("p2")], rejected.status, Progress())
    assert later.step is None and condition(later) == (False, "UpdateRejected") and later.events == ()
    fixed = WeightsSpec("v2", "/models/v2-fixed")
    retried = decide(fixed, [replica("p1"), replica("p2")], rejected.status, Progress())
    assert retried.step == update("p1", weights=fixed) and retried.status["rejected"] is None


def test_a_failed_step_is_reported_and_tried_again():
    step = update("p1")
    finished = Progress(finished=(step, Outcome(False, message="UNAVAILABLE: connection refused")))
    decision = decide(V2, [replica("p1"), replica("p2")], None, finished)
    assert decision.step == update("p1") and condition(decision) == (False, "UpdateFailed")
    assert "p1: UNAVAILABLE: connection refused (tried again)" in decision.condition.message
    assert [e.reason for e in decision.events] == ["WeightsUpdateFailed"]


def test_a_replica_found_paused_is_resumed():
    """An operator stopped between the pause and the resume: the next one resumes it."""
    decision = decide(V2, [replica("p1", "v2", paused=True), replica("p2", "v2")], None, Progress())
    assert decision.step == WeightsStep(RESUME, "p1", f"10.0.0.1:{GRPC_PORT}") and decision.drained is None
    assert condition(decision) == (False, "Updating") and decision.status["updated"] == 1
    resumed = Progress(finished=(decision.step, Outcome(True)))
    after = decide(V2, [replica("p1", "v2"), replica("p2", "v2")], decision.status, resumed)
    assert after.step is None and condition(after) == (True, "Updated")
    assert [e.reason for e in after.events] == ["ReplicaResumed"]


def test_a_replica_found_paused_and_behind_is_updated_first():
    decision = decide(V2, [replica("p1"), replica("p2", paused=True)], None, Progress())
    assert decision.step == update("p2")


def test_a_scaled_up_replica_starts_behind_and_is_updated():
    before = decide(V2, [replica("p1", "v2"), replica("p2", "v2")], None, Progress())
    joining = replica("p3", None, serving=False)  # not ready yet: not asked
    waiting = decide(V2, [replica("p1", "v2"), replica("p2", "v2"), joining], before.status, Progress())
    assert waiting.step is None and condition(waiting) == (False, "WaitingForReplicas")
    assert "2/3 replicas run weights v2; waiting for p3 to answer" in waiting.condition.message
    ready = decide(V2, [replica("p1", "v2"), replica("p2", "v2"), replica("p3")], waiting.status, Progress())
    assert ready.step == update("p3")


def test_a_lone_replica_is_updated_in_the_route():
    """With no other replica of its revision, it stays routed: requests wait out its short pause."""
    decision = decide(V2, [replica("p1")], None, Progress())
    assert decision.step == update("p1", drain=False) and decision.drained is None


def test_no_replica_is_paused_while_its_revision_has_no_other_serving():
    replicas = [replica("p1"), replica("p2", None, serving=False)]
    decision = decide(V2, replicas, None, Progress())
    assert decision.step is None and condition(decision) == (False, "WaitingForReplicas")
    assert "p1 waits until another replica of v1-abc123 serves" in decision.condition.message


def test_a_silent_replica_is_named_with_its_error():
    silent = Replica("p2", REV, f"10.0.0.2:{GRPC_PORT}", True, None, "UNIMPLEMENTED: unknown service")
    decision = decide(V2, [replica("p1", "v2"), silent], None, Progress())
    assert decision.step is None and "waiting for p2 (UNIMPLEMENTED: unknown service)" in decision.condition.message


def test_without_weights_nothing_is_asked_or_kept_and_a_paused_replica_is_still_resumed():
    assert not watched({"model": {"revision": "v1"}}, {})
    assert watched({"model": {"revision": "v1", "weights": {"version": "v2", "path": "/w"}}}, {})
    assert watched({"model": {"revision": "v1"}}, {"weights": {"version": "v2"}})  # once more, to clean up
    idle = decide(None, [replica("p1", "v2")], {"version": "v2"}, Progress())
    assert idle.step is None and idle.status is None and condition(idle) == (True, "NotRequested")
    paused = decide(None, [replica("p1", "v2", paused=True)], None, Progress())
    assert paused.step.kind == RESUME and paused.status["version"] is None and paused.status["updating"] == "p1"


# The roll inside a reconcile pass: the route, the revision, the status.

REF = PoolRef("chat", "team-a", "uid-1")
SPEC = {
    "model": {"source": "embedded", "revision": "v1"},
    "replicas": 2,
    "runtime": {"device": "cpu"},
    "resources": {"gpus": 0},
}
WITH_WEIGHTS = {**SPEC, "model": {**SPEC["model"], "weights": {"version": "v2", "path": "/models/v2"}}}
OK = RouterView(reachable=True)


def pod(revision: str, ip: str) -> dict:
    return {
        "metadata": {"name": f"p{ip[-1]}", "labels": {"shoal.dev/pool": "chat", "shoal.dev/revision": revision}},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_naming_weights_is_no_new_revision_and_the_replica_updated_leaves_the_route():
    assert revision_name(parse_pool_spec(WITH_WEIGHTS)) == revision_name(parse_pool_spec(SPEC))
    first = plan_for(PoolObject(REF, 1, SPEC, {}), Observed([], []), OK, 1000.0, 30)
    stable = first.status["stableRevision"]
    pods = [pod(stable, "10.0.0.1"), pod(stable, "10.0.0.2")]
    lifecycles = {"p1": Lifecycle("v2", False), "p2": Lifecycle("initial", False)}
    plan = plan_for(PoolObject(REF, 2, WITH_WEIGHTS, first.status), Observed([], pods, lifecycles), OK, 1001.0, 30)
    assert plan.status["stableRevision"] == stable and plan.status["canaryRevision"] is None
    assert set(plan.deployments) == set(first.deployments)
    assert plan.deployments == first.deployments  # the pods are not changed either
    assert plan.weights_step == WeightsStep(UPDATE, "p2", f"10.0.0.2:{GRPC_PORT}", "v2", "/models/v2", True)
    assert [e.target for e in plan.route.revisions[stable]] == [f"10.0.0.1:{GRPC_PORT}"]
    weights = next(c for c in plan.status["conditions"] if c["type"] == "WeightsUpdated")
    assert (weights["status"], weights["reason"]) == ("False", "Updating")
    assert plan.status["weights"]["updating"] == "p2" and plan.status["phase"] == "Ready"
    # The stable template a promotion keeps holds no weights: they are not the revision's.
    assert template_of(WITH_WEIGHTS)["model"] == SPEC["model"]


def test_a_partial_update_is_never_resumed_only_completed():
    """An update broken half way leaves "<version>+partial", paused: resumed, it would serve a mix."""
    decision = decide(V2, [replica("p1", "v2+partial", paused=True), replica("p2")], None, Progress())
    assert decision.step == update("p1")
    unwanted = decide(None, [replica("p1", "v2+partial", paused=True)], {"version": "v2"}, Progress())
    assert unwanted.step is None and condition(unwanted) == (False, "PartialUpdate")
    assert unwanted.status["replicas"] == [{"pod": "p1", "version": "v2+partial", "paused": True}]
