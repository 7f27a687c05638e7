"""Waiting-queue limit and the retry hint given to refused clients."""

import pytest

from shoal.runtime.engine.queue_limits import MAX_RETRY_AFTER_S, QueueLimits
from shoal.runtime.errors import QueueFullError


def test_requests_are_refused_once_the_queue_holds_max_waiting():
    limits = QueueLimits(max_waiting=3)
    limits.check(num_waiting=2, now=0.0)
    with pytest.raises(QueueFullError) as error:
        limits.check(num_waiting=3, now=0.0)
    assert error.value.retry_after_s == 1  # nothing has finished yet: the shortest hint


def test_retry_hint_is_the_time_to_drain_the_queue_at_the_recent_finish_rate():
    limits = QueueLimits(max_waiting=10, window_s=10.0)
    for t in range(20):  # two requests a second
        limits.record_finish(now=float(t) / 2)
    assert limits.retry_after_s(num_waiting=10, now=10.0) == 5
    assert limits.retry_after_s(num_waiting=10_000, now=10.0) == MAX_RETRY_AFTER_S


def test_old_finishes_fall_out_of_the_window():
    limits = QueueLimits(max_waiting=10, window_s=10.0)
    limits.record_finish(now=0.0)
    assert limits.retry_after_s(num_waiting=1, now=100.0) == 1
