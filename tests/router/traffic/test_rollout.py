"""Rollout state: a breach pulls the canary out at once, records why, and it stays out (no flapping)."""

import pytest

from shoal.route_contract import Breach
from shoal.router.traffic.rollout import PoolRollout, RolloutConflict
from shoal.router.traffic.split import Split

BREACH = Breach("error_rate", {"canary_error_rate": 0.2}, "<= 0.01 over 60s")


def test_a_breach_sets_the_canary_weight_to_zero_and_records_the_verdict():
    rollout = PoolRollout(Split("v1", "v2", 10.0))
    verdict = rollout.roll_back([BREACH], wall_now=123.0)
    assert rollout.split == Split("v1", "v2", 0.0)
    assert verdict.revision == "v2" and verdict.weight_before == 10.0 and verdict.at == 123.0
    assert "error_rate: canary_error_rate=0.2" in verdict.reason
    assert rollout.rolled_back == {"v2": verdict} and not rollout.canary_active


def test_no_breach_or_no_canary_changes_nothing():
    rollout = PoolRollout(Split("v1", "v2", 10.0))
    assert rollout.roll_back([], 1.0) is None and rollout.split.canary_weight == 10.0
    assert PoolRollout(Split("v1")).roll_back([BREACH], 1.0) is None


def test_a_rolled_back_revision_stays_out_until_reset():
    rollout = PoolRollout(Split("v1", "v2", 10.0))
    first = rollout.roll_back([BREACH], 1.0)
    assert rollout.roll_back([BREACH], 2.0) is None  # one verdict, not one per evaluation
    with pytest.raises(RolloutConflict, match="reset it first") as conflict:
        rollout.set_weights("v1", "v2", 5.0)
    assert conflict.value.revision == "v2"
    assert rollout.split.canary_weight == 0.0 and rollout.rolled_back["v2"] is first
    rollout.set_weights("v1", "v2", 0.0)  # keeping it at 0 is fine
    with pytest.raises(RolloutConflict):
        rollout.set_weights("v2", None, 0.0)  # nor may it become stable
    assert rollout.reset("v2") and not rollout.reset("v2")
    rollout.set_weights("v1", "v2", 5.0)
    assert rollout.canary_active


def test_weights_are_validated():
    rollout = PoolRollout(Split("v1", "v2", 10.0))
    with pytest.raises(ValueError):
        rollout.set_weights("v1", "v2", 150.0)
    rollout.set_weights("v2", "v3", 50.0)
    assert rollout.split == Split("v2", "v3", 50.0)
