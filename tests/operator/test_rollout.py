"""The rollout state machine, transition by transition (pure: no API, no router)."""

import pytest

from shoal.operator.rollout import (
    ABORT,
    PROMOTE,
    Observations,
    Retiring,
    RolloutState,
    RouterView,
    Wanted,
    advance,
    canary_replicas,
)
from shoal.operator.spec import parse_pool_spec
from shoal.route_contract import Breach, ScrapeHealth, Verdict

SPEC = parse_pool_spec(
    {
        "model": {"revision": "v1"},
        "replicas": 4,
        "rollout": {
            "steps": [{"weight": 10, "pause": "60s"}, {"weight": 50, "pause": "60s"}],
            "analysis": {"minSamples": 100},
            "progressDeadline": "5m",
        },
    }
)
OK = RouterView(reachable=True)
T0 = 1_000_000.0


def step(state, desired="v2-x", ready=None, router=OK, action=None, now=T0):
    wanted = Wanted(desired, {"model": {"revision": desired}})
    return advance(state, wanted, SPEC, Observations(ready or {}, router, action, now), drain_s=30)


def test_first_revision_becomes_stable_without_a_canary():
    decision = step(RolloutState(), desired="v1-a")
    assert decision.state.stable == "v1-a" and decision.state.canary is None
    assert decision.replicas(SPEC) == {"v1-a": 4}
    assert [e.reason for e in decision.events] == ["StableCreated"]


def test_new_revision_starts_a_canary_sized_for_the_first_step_at_weight_zero():
    decision = step(RolloutState(stable="v1-a"))
    assert decision.state.canary == "v2-x" and decision.state.canary_weight == 0
    assert decision.replicas(SPEC) == {"v1-a": 4, "v2-x": 1}
    assert [e.reason for e in decision.events] == ["RolloutStarted"]


def test_a_canary_whose_metrics_the_router_cannot_read_holds_its_step_without_rolling_back():
    at_10 = RolloutState(stable="v1-a", canary="v2-x", canary_weight=10, step=0, step_started_at=T0)
    ready = {"v1-a": 4, "v2-x": 2}
    blind = RouterView(True, canary_requests=1000, unscraped={"v2-x": ScrapeHealth(endpoints=1, failing=1)})
    held = step(at_10, ready=ready, router=blind, now=T0 + 999)
    assert held.state == at_10 and held.events == ()
    stable_blind = RouterView(True, canary_requests=1000, unscraped={"v1-a": ScrapeHealth(endpoints=4, failing=1)})
    assert step(at_10, ready=ready, router=stable_blind, now=T0 + 999).state.step == 1  # only the canary's count


def test_weight_moves_only_once_the_canary_is_ready():
    started = step(RolloutState(stable="v1-a")).state
    assert step(started, ready={"v1-a": 4}, now=T0 + 5).state.canary_weight == 0
    moved = step(started, ready={"v1-a": 4, "v2-x": 1}, now=T0 + 5)
    assert moved.state.canary_weight == 10 and moved.state.step_started_at == T0 + 5
    assert [e.reason for e in moved.events] == ["CanaryStep"]


def test_step_advances_after_pause_and_enough_samples_only():
    at_10 = RolloutState(stable="v1-a", canary="v2-x", canary_weight=10, step=0, step_started_at=T0)
    ready = {"v1-a": 4, "v2-x": 2}
    assert (
        step(at_10, ready=ready, router=RouterView(True, canary_requests=500), now=T0 + 30).state.step == 0
    )  # pausing
    assert step(at_10, ready=ready, router=RouterView(True, canary_requests=99), now=T0 + 90).state.step == 0  # samples
    moved = step(at_10, ready=ready, router=RouterView(True, canary_requests=100), now=T0 + 90)
    # 50% needs 2 of 4 replicas, which are ready: the weight moves in the same pass
    assert moved.state.step == 1 and moved.state.canary_weight == 50


def test_unreachable_router_holds_the_rollout():
    at_10 = RolloutState(stable="v1-a", canary="v2-x", canary_weight=10, step=0, step_started_at=T0)
    held = step(at_10, ready={"v2-x": 4}, router=RouterView(False, error="refused", canary_requests=1000), now=T0 + 999)
    assert held.state == at_10


def test_last_step_promotes_once_the_canary_is_full_size_and_old_stable_drains():
    last = RolloutState(stable="v1-a", canary="v2-x", canary_weight=50, step=1, step_started_at=T0)
    promoting = step(last, ready={"v1-a": 4, "v2-x": 2}, router=RouterView(True, canary_requests=100), now=T0 + 61)
    assert promoting.state.step == 2 and promoting.state.canary == "v2-x"
    assert promoting.replicas(SPEC) == {"v1-a": 4, "v2-x": 4}
    done = step(promoting.state, ready={"v1-a": 4, "v2-x": 4}, now=T0 + 70)
    assert done.state.stable == "v2-x" and done.state.canary is None
    assert done.state.stable_template == {"model": {"revision": "v2-x"}}
    assert done.state.retiring == (Retiring("v1-a", T0 + 100),)
    assert [e.reason for e in done.events] == ["Promoted"]
    # the retired revision goes once its drain time has passed
    assert step(done.state, desired="v2-x", now=T0 + 101).state.retiring == ()


def test_router_verdict_aborts_and_the_revision_is_not_retried():
    at_10 = RolloutState(stable="v1-a", canary="v2-x", canary_weight=10, step=0, step_started_at=T0)
    verdict = Verdict(
        "v2-x", (Breach("error_rate", {"canary_error_rate": 0.5}, "<= 0.01 over 60s"),), at=T0, weight_before=10.0
    )
    aborted = step(at_10, router=RouterView(True, verdicts={"v2-x": verdict}), now=T0 + 5)
    state = aborted.state
    assert state.canary is None and state.canary_weight == 0 and state.rolled_back == "v2-x"
    assert state.last_rollback["rules"] == [
        {"rule": "error_rate", "observed": {"canary_error_rate": 0.5}, "threshold": "<= 0.01 over 60s"}
    ]
    assert (
        state.last_rollback["reason"] == "error_rate: canary_error_rate=0.5 (limit: <= 0.01 over 60s)"
        and state.last_rollback["weight"] == 10
    )
    assert [e.type for e in aborted.events] == ["Warning"] and "error_rate" in aborted.events[0].message
    assert aborted.replicas(SPEC) == {"v1-a": 4}
    assert Retiring("v2-x", T0 + 35) in state.retiring
    again = step(state, now=T0 + 10)  # the spec still names v2-x
    assert again.state.canary is None and again.events == ()


OLD_VERDICT = Verdict("v2-x", (), at=T0 - 3600, weight_before=5.0)


def test_a_revision_retried_after_another_clears_the_old_verdict_first():
    state = RolloutState(stable="v1-a", rolled_back="v2-x")
    restarted = step(state, desired="v3-y", router=RouterView(True, verdicts={"v2-x": OLD_VERDICT}))
    assert restarted.state.canary == "v3-y" and restarted.state.rolled_back is None
    assert restarted.reset_verdict is None
    back = step(RolloutState(stable="v1-a"), desired="v2-x", router=RouterView(True, verdicts={"v2-x": OLD_VERDICT}))
    assert back.state.canary == "v2-x" and back.reset_verdict == "v2-x"  # not aborted by the stale verdict


def test_canary_not_ready_within_the_deadline_aborts():
    started = step(RolloutState(stable="v1-a")).state
    assert step(started, now=T0 + 299).state.canary == "v2-x"
    late = step(started, now=T0 + 301)
    assert late.state.canary is None and late.state.rolled_back == "v2-x"
    assert "progress deadline" in late.state.last_rollback["reason"]


def test_abort_annotation():
    at_10 = RolloutState(stable="v1-a", canary="v2-x", canary_weight=10, step=0, step_started_at=T0)
    aborted = step(at_10, action=ABORT, now=T0 + 1)
    assert aborted.state.rolled_back == "v2-x" and aborted.state.last_rollback["reason"] == "aborted by annotation"


def test_promote_annotation_skips_the_remaining_steps():
    at_10 = RolloutState(stable="v1-a", canary="v2-x", canary_weight=10, step=0, step_started_at=T0)
    promoting = step(at_10, action=PROMOTE, ready={"v2-x": 1}, now=T0 + 1)
    assert promoting.state.step == 2 and promoting.replicas(SPEC)["v2-x"] == 4
    done = step(promoting.state, ready={"v2-x": 4}, now=T0 + 2)
    assert done.state.stable == "v2-x"


def test_spec_changed_mid_rollout_replaces_the_canary():
    at_10 = RolloutState(stable="v1-a", canary="v2-x", canary_weight=10, step=0, step_started_at=T0)
    replaced = step(at_10, desired="v3-y", now=T0 + 5)
    assert replaced.state.canary == "v3-y" and replaced.state.canary_weight == 0
    assert Retiring("v2-x", T0 + 35) in replaced.state.retiring
    assert [e.reason for e in replaced.events] == ["RolloutSuperseded", "RolloutStarted"]


def test_spec_reverted_to_stable_mid_rollout_withdraws_the_canary_without_a_rollback():
    at_10 = RolloutState(stable="v1-a", canary="v2-x", canary_weight=10, step=0, step_started_at=T0)
    reverted = step(at_10, desired="v1-a", now=T0 + 5)
    assert reverted.state.canary is None and reverted.state.rolled_back is None
    assert [e.reason for e in reverted.events] == ["RolloutCancelled"]


def test_restart_mid_rollout_resumes_from_state_alone():
    """Whatever pass runs next (a new operator process) continues from status: same inputs, same step."""
    mid = RolloutState(stable="v1-a", canary="v2-x", canary_weight=50, step=1, step_started_at=T0)
    first = step(mid, ready={"v1-a": 4, "v2-x": 2}, router=RouterView(True, canary_requests=10), now=T0 + 61)
    second = step(mid, ready={"v1-a": 4, "v2-x": 2}, router=RouterView(True, canary_requests=10), now=T0 + 61)
    assert first == second and first.state == mid  # not enough samples: nothing moves, nothing repeats


@pytest.mark.parametrize(
    "replicas,weight,expected", [(4, 10, 1), (4, 50, 2), (3, 25, 1), (10, 25, 3), (0, 5, 1), (1, 100, 1)]
)
def test_canary_replicas(replicas, weight, expected):
    assert canary_replicas(replicas, weight) == expected
