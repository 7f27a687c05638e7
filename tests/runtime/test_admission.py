"""Waiting-queue limit and the retry hint given to refused clients."""

import pytest

from shoal.runtime.engine.admission import MAX_RETRY_AFTER_S, AdmissionControl
from shoal.runtime.errors import QueueFullError


def test_requests_are_refused_once_the_queue_holds_max_waiting():
    admission = AdmissionControl(max_waiting=3)
    admission.check(num_waiting=2, now=0.0)
    with pytest.raises(QueueFullError) as error:
        admission.check(num_waiting=3, now=0.0)
    assert error.value.retry_after_s == 1  # nothing has finished yet: the shortest hint


def test_retry_hint_is_the_time_to_drain_the_queue_at_the_recent_finish_rate():
    admission = AdmissionControl(max_waiting=10, window_s=10.0)
    for t in range(20):  # two requests a second
        admission.record_finish(now=float(t) / 2)
    assert admission.retry_after_s(num_waiting=10, now=10.0) == 5
    assert admission.retry_after_s(num_waiting=10_000, now=10.0) == MAX_RETRY_AFTER_S


def test_old_finishes_fall_out_of_the_window():
    admission = AdmissionControl(max_waiting=10, window_s=10.0)
    admission.record_finish(now=0.0)
    assert admission.retry_after_s(num_waiting=1, now=100.0) == 1
