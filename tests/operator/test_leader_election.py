"""Leader election's decisions (operator/leader_election.py), as client-go makes them: pure, on
records and clocks given."""

import pytest

from shoal.operator.leader_election import (
    Action,
    LeaseRecord,
    Observation,
    Timing,
    decide,
    leadership_lost,
    observe,
    released,
)

TIMING = Timing(lease_duration_s=15, renew_deadline_s=10, retry_period_s=2)
WALL = 1_800_000_000.0


def test_without_a_lease_the_first_candidate_creates_it_holding_it():
    decision = decide(None, None, "a", now=100.0, wall=WALL, timing=TIMING)
    assert decision.action is Action.CREATE
    assert decision.record == LeaseRecord("a", 15, acquire_time=WALL, renew_time=WALL, transitions=0)


def test_a_lease_renewed_by_another_is_waited_for():
    theirs = LeaseRecord("b", 15, WALL - 60, WALL - 1, transitions=3)
    decision = decide(theirs, None, "a", now=100.0, wall=WALL, timing=TIMING)
    assert decision.action is Action.WAIT and decision.record is None
    assert decision.observed == Observation(theirs, 100.0)


def test_expiry_is_judged_by_our_clock_from_when_the_record_last_changed_not_by_its_renew_time():
    # renewTime says an hour ago (another node's clock may be off): still valid until it has
    # stood unchanged, in our eyes, for its leaseDurationSeconds.
    stale_looking = LeaseRecord("b", 15, WALL - 7200, WALL - 3600, transitions=1)
    first = decide(stale_looking, None, "a", now=100.0, wall=WALL, timing=TIMING)
    assert first.action is Action.WAIT
    assert decide(stale_looking, first.observed, "a", now=114.9, wall=WALL + 14.9, timing=TIMING).action is Action.WAIT
    taken = decide(stale_looking, first.observed, "a", now=115.0, wall=WALL + 15, timing=TIMING)
    assert taken.action is Action.TAKE
    assert taken.record == LeaseRecord("a", 15, acquire_time=WALL + 15, renew_time=WALL + 15, transitions=2)


def test_each_renewal_by_the_holder_restarts_the_clock():
    seen = observe(None, LeaseRecord("b", 15, WALL, WALL), now=100.0)
    renewed = LeaseRecord("b", 15, WALL, WALL + 10)
    decision = decide(renewed, seen, "a", now=112.0, wall=WALL + 12, timing=TIMING)
    assert decision.action is Action.WAIT and decision.observed == Observation(renewed, 112.0)
    assert decide(renewed, decision.observed, "a", now=126.0, wall=WALL + 26, timing=TIMING).action is Action.WAIT
    assert decide(renewed, decision.observed, "a", now=127.0, wall=WALL + 27, timing=TIMING).action is Action.TAKE


def test_the_holder_renews_keeping_its_acquire_time_and_the_transition_count():
    ours = LeaseRecord("a", 15, WALL - 100, WALL - 2, transitions=4)
    decision = decide(ours, None, "a", now=100.0, wall=WALL, timing=TIMING)
    assert decision.action is Action.RENEW
    assert decision.record == LeaseRecord("a", 15, acquire_time=WALL - 100, renew_time=WALL, transitions=4)


def test_a_released_lease_is_taken_at_once():
    ours = LeaseRecord("b", 15, WALL - 100, WALL - 2, transitions=4)
    handed_back = released(ours, "b", WALL)
    assert handed_back == LeaseRecord(None, 1, acquire_time=WALL - 100, renew_time=WALL, transitions=4)
    decision = decide(handed_back, None, "a", now=100.0, wall=WALL + 1, timing=TIMING)
    assert decision.action is Action.TAKE and decision.record.holder == "a" and decision.record.transitions == 5


def test_only_the_holder_releases():
    assert released(LeaseRecord("b", 15, WALL, WALL), "a", WALL) is None


def test_the_holder_stops_acting_once_the_renew_deadline_passed_without_a_renewal():
    assert not leadership_lost(last_renewal=100.0, now=109.9, timing=TIMING)
    assert leadership_lost(last_renewal=100.0, now=110.0, timing=TIMING)


@pytest.mark.parametrize(("duration", "deadline", "period"), [(10, 10, 2), (15, 10, 9), (15, 10, 0)])
def test_timings_that_could_let_two_act_at_once_are_refused(duration, deadline, period):
    with pytest.raises(ValueError, match="lease duration > renew deadline"):
        Timing(duration, deadline, period)
