"""The cold-start hold's queue, pure: bounded, oldest first, and a full queue's Retry-After is when the
oldest held request leaves at the latest."""

from shoal.route_contract import ColdStart
from shoal.router.traffic.hold import HoldQueue


def test_it_holds_up_to_max_queued_and_releases_oldest_first():
    queue = HoldQueue(ColdStart(max_queued=3))
    assert [queue.arrive(ticket, now) for now, ticket in enumerate("abc")] == [True, True, True]
    assert not queue.arrive("d", 3.0) and len(queue) == 3
    assert queue.release() == ["a", "b", "c"]
    assert len(queue) == 0 and queue.release() == []
    assert queue.arrive("d", 4.0)  # room again


def test_a_withdrawn_ticket_leaves_its_place_and_the_oldest_moves_up():
    queue = HoldQueue(ColdStart(max_queued=2))
    queue.arrive("a", 10.0)
    queue.arrive("b", 12.0)
    assert queue.oldest_s(15.0) == 5.0
    assert queue.withdraw("a") and not queue.withdraw("a")
    assert queue.oldest_s(15.0) == 3.0 and queue.arrive("c", 15.0)
    assert queue.release() == ["b", "c"] and not queue.withdraw("b")  # released: nothing to withdraw
    assert queue.oldest_s(20.0) == 0.0


def test_a_full_queue_says_when_its_oldest_request_leaves_at_the_latest():
    queue = HoldQueue(ColdStart(max_queued=1, max_wait_s=30.0))
    queue.arrive("a", 100.0)
    assert queue.retry_after_s(100.0) == 30
    assert queue.retry_after_s(112.5) == 18  # rounded up
    assert queue.retry_after_s(130.0) == 1  # due now: the floor, never 0
    assert HoldQueue(ColdStart(max_wait_s=600.0)).retry_after_s(0.0) == 60  # the QoS queue's ceiling
