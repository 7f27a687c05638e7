"""Rolling windows: exact quantiles, forgetting by time, bounded memory, per-second counts."""

import pytest

from shoal.router.traffic.windows import CountWindow, SampleWindow, quantile


def test_quantiles_interpolate_between_ranks():
    values = list(range(1, 101))
    assert quantile(values, 0.5) == pytest.approx(50.5)
    assert quantile(values, 0.99) == pytest.approx(99.01)
    assert quantile([3.0], 0.99) == 3.0
    assert quantile([], 0.5) is None


def test_samples_older_than_the_window_do_not_count():
    window = SampleWindow(retention_s=60)
    for t in range(100):
        window.add(float(t), now=float(t))
    assert window.values(now=99.0, window_s=10) == [89.0 + i for i in range(11)]
    assert len(window.values(now=99.0)) == 61  # the retention
    assert window.values(now=500.0) == []


def test_a_window_holds_at_most_its_cap():
    window = SampleWindow(retention_s=1000, max_samples=100)
    for i in range(10_000):
        window.add(float(i), now=0.0)
    assert len(window) == 100 and window.values(now=0.0)[0] == 9900.0


def test_counts_sum_the_seconds_inside_the_window():
    counts = CountWindow(retention_s=60, fields=("requests", "errors"))
    for t in range(30):
        counts.add(float(t) + 0.5, requests=2, errors=1 if t % 10 == 0 else 0)
    assert counts.totals(now=29.9, window_s=10) == {"requests": 20, "errors": 1}
    assert counts.totals(now=29.9, window_s=60) == {"requests": 60, "errors": 3}
    assert counts.totals(now=200.0, window_s=60) == {"requests": 0, "errors": 0}


def test_measurements_forget_revisions_that_went_quiet():
    from shoal.router.traffic.measurements import Measurements, ScrapeSample

    m = Measurements(retention_s=60)
    m.record_finish("p", "old", "realtime", 0.0, error=False, e2e_s=0.1)
    m.record_scrape("p", "old", 0.0, ScrapeSample(kv_free=0.5, preemptions=0))
    m.record_finish("p", "new", "realtime", 100.0, error=False, e2e_s=0.1)
    m.prune(now=100.0)
    assert m.keys() == [("p", "new", "realtime")] and m.revisions("p") == ["new"]


def test_measurements_keep_longer_once_a_pool_looks_further_back():
    from shoal.router.traffic.measurements import Measurements, ScrapeSample

    m = Measurements(retention_s=60)
    m.record_finish("p", "v1", "realtime", 0.0, error=True, e2e_s=0.1)
    m.record_scrape("p", "v1", 0.0, ScrapeSample(kv_free=0.5, preemptions=2))
    m.retain(30)  # never shorter
    m.retain(600)
    stats = m.stats("p", "v1", 600, now=500.0)
    assert (stats.requests, stats.errors, stats.latencies["e2e"], stats.kv_free, stats.preemptions) == (
        1,
        1,
        [0.1],
        [0.5],
        2,
    )
    m.record_finish("p", "v2", "realtime", 0.0, error=False)  # windows made later keep as long
    assert m.stats("p", "v2", 600, now=500.0).requests == 1
