"""The test-only fault injection: off unless asked for, and it delays and fails as configured."""

import asyncio
import random
import time

from shoal.runtime.server.fault_injection import FaultInjection


def test_no_flags_build_no_fault_injection():
    assert FaultInjection.from_settings(0.0, 0.0) is None


def test_error_rate_fails_about_that_fraction_of_requests():
    faults = FaultInjection(error_rate=0.3, rng=random.Random(1))
    outcomes = [asyncio.run(faults.next_fault()) for _ in range(2000)]
    failed = sum(o is not None for o in outcomes)
    assert 500 < failed < 700  # 600 expected; the binomial sd is 20
    assert all(o is None or "injected fault" in o for o in outcomes)


def test_latency_delays_each_request():
    faults = FaultInjection.from_settings(0.05, 0.0)
    start = time.monotonic()
    assert asyncio.run(faults.next_fault()) is None
    assert time.monotonic() - start >= 0.05
