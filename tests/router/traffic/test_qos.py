"""QoS policy: realtime first, batch within its share and shed first, bounded queues, AIMD share."""

import pytest

from shoal.route_contract import QosConfig
from shoal.router.traffic.qos import BATCH, REALTIME, BatchShare, Decision, QosPolicy, drain_time_s

CONFIG = QosConfig(
    realtime_queue=2, batch_queue=3, batch_share_min=0.25, batch_share_max=0.5, realtime_ttft_target_s=1.0
)


def policy(capacity: int = 8) -> QosPolicy:
    return QosPolicy(CONFIG, capacity)


def test_batch_is_held_to_its_share_while_realtime_may_use_everything():
    q = policy()
    assert q.batch_limit == 4
    assert [q.arrive(BATCH, f"b{i}", 0.0).decision for i in range(5)] == [Decision.ADMITTED] * 4 + [Decision.QUEUED]
    assert [q.arrive(REALTIME, f"r{i}", 0.0).decision for i in range(4)] == [Decision.ADMITTED] * 4
    assert q.arrive(REALTIME, "r4", 0.0).decision is Decision.QUEUED
    assert q.in_flight == {REALTIME: 4, BATCH: 4}


def test_a_freed_slot_goes_to_realtime_before_batch():
    q = policy(capacity=2)
    q.arrive(REALTIME, "r0", 0.0), q.arrive(REALTIME, "r1", 0.0)
    q.arrive(REALTIME, "r2", 0.0)
    assert q.depart(REALTIME, now=0.0) == [(REALTIME, "r2")]
    assert q.arrive(BATCH, "b0", 0.0).decision is Decision.QUEUED
    assert q.depart(REALTIME, now=0.1) == [(BATCH, "b0")]


def test_batch_is_shed_while_realtime_waits_and_realtime_only_when_its_queue_is_full():
    q = policy(capacity=1)
    q.arrive(REALTIME, "r0", 0.0)
    assert q.arrive(BATCH, "b0", 0.0).decision is Decision.QUEUED  # nothing waiting for realtime yet
    assert q.arrive(REALTIME, "r1", 0.0).decision is Decision.QUEUED
    shed = q.arrive(BATCH, "b1", 0.0)
    assert (shed.decision, shed.reason) == (Decision.SHED, "overload")
    assert q.arrive(REALTIME, "r2", 0.0).decision is Decision.QUEUED
    full = q.arrive(REALTIME, "r3", 0.0)
    assert (full.decision, full.reason) == (Decision.SHED, "queue_full")


def test_the_batch_queue_is_bounded():
    q = policy(capacity=1)
    q.arrive(BATCH, "running", 0.0)
    assert [q.arrive(BATCH, i, 0.0).decision for i in range(4)] == [Decision.QUEUED] * 3 + [Decision.SHED]


def test_withdrawn_waiters_leave_the_queue():
    q = policy(capacity=1)
    q.arrive(REALTIME, "r0", 0.0), q.arrive(REALTIME, "r1", 0.0)
    assert q.withdraw(REALTIME, "r1") and not q.withdraw(REALTIME, "r1")
    assert q.depart(REALTIME, 0.0) == []


def test_capacity_changes_admit_waiters_and_batch_keeps_at_least_one_slot():
    q = policy(capacity=0)
    assert q.arrive(BATCH, "b0", 0.0).decision is Decision.QUEUED
    assert q.set_capacity(1, batch_share=0.01) == [(BATCH, "b0")]
    assert q.batch_limit == 1


@pytest.mark.parametrize(
    ("queued_ahead", "completions", "window_s", "seconds"),
    [
        (0, 100, 10.0, 1),  # 10 a second, nobody ahead: at once (never under a second)
        (19, 100, 10.0, 2),  # 20 to start at 10 a second
        (9, 10, 10.0, 10),  # one a second
        (4, 2, 10.0, 25),  # long requests: one every 5 s
        (0, 0, 10.0, 10),  # none finished in the window: slower than one a window
        (3, 0, 10.0, 40),
        (100, 1, 10.0, 60),  # never more than a minute
        (0, 1, 120.0, 60),
    ],
)
def test_retry_after_is_the_time_the_queue_ahead_takes_to_drain(queued_ahead, completions, window_s, seconds):
    assert drain_time_s(queued_ahead, completions, window_s) == seconds


def test_retry_after_follows_the_completion_rate_and_who_is_ahead():
    q = policy(capacity=1)
    assert q.retry_after_s(REALTIME, now=0.0) == 10  # no completions yet: one window
    q.arrive(REALTIME, "r0", 0.0)
    for t in range(10):
        q.arrive(REALTIME, f"w{t}", 0.0)
        q.depart(REALTIME, now=float(t))  # one a second
    q.arrive(REALTIME, "x", 0.0)
    assert q.retry_after_s(REALTIME, now=9.5) == 2  # x waits, then the one turned away
    assert q.retry_after_s(REALTIME, now=30.0) == 20  # the window has passed: nothing drains lately
    q = policy(capacity=1)
    q.arrive(REALTIME, "r0", 0.0), q.arrive(BATCH, "b0", 0.0), q.arrive(BATCH, "b1", 0.0)
    assert q.retry_after_s(REALTIME, now=0.0) == 10  # realtime goes before the batch queue
    assert q.retry_after_s(BATCH, now=0.0) == 30


def test_batch_share_halves_near_the_target_and_creeps_back():
    share = BatchShare(CONFIG)
    assert share.share == 0.5
    assert share.update(0.9) == 0.25  # above 0.8 x target: halve, down to the minimum
    assert share.update(0.9) == 0.25
    assert share.update(0.6) == 0.25  # between: hold
    assert share.update(0.1) == 0.30
    for _ in range(10):
        share.update(None)  # no realtime traffic: grow back
    assert share.share == 0.5


def test_new_share_bounds_move_the_share_inside_them_and_keep_it_otherwise():
    share = BatchShare(CONFIG)
    share.update(0.9)  # 0.25
    share.reconfigure(QosConfig(batch_share_min=0.4, batch_share_max=0.8))
    assert share.share == 0.4
    share.reconfigure(QosConfig(batch_share_min=0.1, batch_share_max=0.8))
    assert share.share == 0.4 and share.update(0.9) == 0.2  # the new minimum applies


def test_realtime_is_refused_while_its_queue_head_has_waited_past_the_ttft_target():
    q = QosPolicy(QosConfig(realtime_queue=10, realtime_ttft_target_s=1.0), capacity=1)
    assert q.arrive(REALTIME, "running", 0.0).decision is Decision.ADMITTED
    assert q.arrive(REALTIME, "w0", 0.0).decision is Decision.QUEUED
    assert q.arrive(REALTIME, "w1", 0.9).decision is Decision.QUEUED  # the head has waited 0.9 s
    late = q.arrive(REALTIME, "w2", 1.1)
    assert (late.decision, late.reason) == (Decision.SHED, "late") and q.waited_s(REALTIME, 1.1) == 1.1
    assert q.depart(REALTIME, now=1.2) == [(REALTIME, "w0")]  # w1 is the head now, queued at 0.9
    assert q.arrive(REALTIME, "w3", 1.5).decision is Decision.QUEUED
    assert q.withdraw(REALTIME, "w1") and q.waited_s(REALTIME, 1.5) == 0.0  # w3 joined just now
    assert q.arrive(BATCH, "b0", 5.0).reason == "overload"  # batch still yields to waiting realtime


def test_realtime_is_refused_when_the_service_rate_says_it_would_wait_past_its_target():
    q = QosPolicy(QosConfig(realtime_queue=10, realtime_ttft_target_s=1.0), capacity=2)
    q.arrive(REALTIME, "a", 0.0), q.arrive(REALTIME, "b", 0.0)
    for i in range(4):  # saturated: a slot frees every 0.5 s, someone waiting each time
        assert q.arrive(REALTIME, f"w{i}", 0.5 * i).decision is Decision.QUEUED
        q.depart(REALTIME, now=0.5 * i + 0.25)
    assert q.arrive(REALTIME, "x0", 2.0).decision is Decision.QUEUED  # none ahead: 1 / (2 per s) = 0.5 s
    assert q.arrive(REALTIME, "x1", 2.0).decision is Decision.QUEUED  # one ahead: 1.0 s
    late = q.arrive(REALTIME, "x2", 2.0)  # two ahead: 1.5 s, though the head joined just now
    assert (late.decision, late.reason) == (Decision.SHED, "late")
    assert q.foreseen_wait_s(2.0) == 1.5 and q.waited_s(REALTIME, 2.0) == 0.0
    assert q.foreseen_wait_s(20.0) == q.waited_s(REALTIME, 20.0) == 18.0  # the rate is stale: the head's wait
