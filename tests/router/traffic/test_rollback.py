"""Rollback rules: each needs its minimum samples, reads only its window, and says what it saw."""

from shoal.route_contract import ErrorRateRule, KvFreeRule, LatencyRatioRule, OomRule, PreemptionRule
from shoal.router.traffic.measurements import Measurements, ScrapeSample
from shoal.router.traffic.rollback import evaluate

NOW = 1000.0


def record(m: Measurements, revision: str, n: int, *, e2e: float = 0.1, errors: int = 0, at: float = NOW) -> None:
    for i in range(n):
        m.record_finish("p", revision, "realtime", at, error=i < errors, e2e_s=e2e)


def check(m: Measurements, *rules, now: float = NOW):
    return evaluate(rules, "canary", "stable", lambda revision, window_s: m.stats("p", revision, window_s, now))


def test_latency_ratio_waits_for_min_samples_on_both_sides():
    m = Measurements()
    rule = LatencyRatioRule(metric="e2e", quantile=0.99, max_ratio=1.3, min_samples=50)
    record(m, "stable", 100, e2e=0.1)
    record(m, "canary", 49, e2e=1.0)
    assert check(m, rule) == []
    record(m, "canary", 1, e2e=1.0)
    (breach,) = check(m, rule)
    assert breach.rule == "latency_ratio:e2e_p99"
    assert (
        breach.observed["canary_s"] == 1.0 and breach.observed["stable_s"] == 0.1 and breach.observed["ratio"] == 10.0
    )
    assert "1.3 x stable" in breach.threshold


def test_latency_ratio_within_limits_or_below_the_minimum_difference_is_fine():
    m = Measurements()
    record(m, "stable", 100, e2e=0.100)
    record(m, "canary", 100, e2e=0.125)
    assert check(m, LatencyRatioRule(min_samples=50)) == []
    m2 = Measurements()
    record(m2, "stable", 100, e2e=0.010)
    record(m2, "canary", 100, e2e=0.030)  # 3x, but 20 ms
    assert check(m2, LatencyRatioRule(min_samples=50, min_difference_s=0.05)) == []
    assert len(check(m2, LatencyRatioRule(min_samples=50))) == 1


def test_error_rate_absolute_and_relative_to_stable():
    m = Measurements()
    record(m, "stable", 100, errors=2)
    record(m, "canary", 100, errors=3)
    assert [b.rule for b in check(m, ErrorRateRule(max_rate=0.01, min_samples=50))] == ["error_rate"]
    assert check(m, ErrorRateRule(max_rate=None, max_over_stable=0.05, min_samples=50)) == []
    (breach,) = check(m, ErrorRateRule(max_rate=None, max_over_stable=0.005, min_samples=50))
    assert breach.observed["canary_error_rate"] == 0.03 and breach.observed["stable_error_rate"] == 0.02


def test_error_rate_needs_min_samples():
    m = Measurements()
    record(m, "canary", 10, errors=10)
    assert check(m, ErrorRateRule(max_rate=0.01, min_samples=20)) == []


def test_only_the_rules_window_counts():
    m = Measurements()
    record(m, "canary", 100, errors=100, at=NOW - 120)  # two minutes ago
    record(m, "canary", 100, errors=0, at=NOW)
    assert check(m, ErrorRateRule(max_rate=0.01, min_samples=50, window_s=60)) == []
    assert len(check(m, ErrorRateRule(max_rate=0.01, min_samples=50, window_s=180))) == 1


def test_any_preemption_and_low_kv_headroom():
    m = Measurements()
    m.record_scrape("p", "canary", NOW - 2, ScrapeSample(kv_free=0.05, preemptions=0))
    m.record_scrape("p", "canary", NOW - 1, ScrapeSample(kv_free=0.06, preemptions=2))
    m.record_scrape("p", "canary", NOW, ScrapeSample(kv_free=0.07, preemptions=0))
    (breach,) = check(m, PreemptionRule(max_count=0))
    assert breach.observed == {"canary_preemptions": 2}
    (kv,) = check(m, KvFreeRule(min_free=0.10, min_samples=3))
    assert abs(kv.observed["canary_kv_free"] - 0.06) < 1e-9
    assert check(m, KvFreeRule(min_free=0.10, min_samples=4)) == []
    assert check(m, PreemptionRule(max_count=2)) == []


def test_one_out_of_memory_error_breaks_the_default_oom_rule_without_waiting_for_samples():
    m = Measurements()
    m.record_scrape("p", "canary", NOW - 90, ScrapeSample(kv_free=0.5, oom_errors=5))  # outside the window
    m.record_scrape("p", "canary", NOW - 1, ScrapeSample(kv_free=0.5, oom_errors=0))
    m.record_scrape("p", "stable", NOW, ScrapeSample(kv_free=0.5, oom_errors=9))  # stable's are not the canary's
    assert check(m, OomRule()) == []
    m.record_scrape("p", "canary", NOW, ScrapeSample(kv_free=0.5, oom_errors=1))
    (breach,) = check(m, OomRule())
    assert breach.rule == "oom_errors" and breach.observed == {"canary_oom_errors": 1}
    assert breach.threshold == "<= 0 over 60s"
    assert check(m, OomRule(max_count=1)) == []


def test_a_scrape_that_read_nothing_breaks_no_rule():
    """A canary whose /metrics cannot be read: its scrapes record no KV sample and no counts, so
    the scraped rules stay silent rather than judge from the gap."""
    m = Measurements()
    for at in range(10):
        m.record_scrape("p", "canary", NOW - at, ScrapeSample(kv_free=None))
    assert check(m, PreemptionRule(), OomRule(), KvFreeRule(min_samples=1)) == []
