"""Tenant limits: concurrency caps, token buckets with reconciliation, and OpenAI's rate-limit headers."""

import pytest

from shoal.router.config import TenantConfig
from shoal.router.traffic.tenants import RateLimited, TenantLimiter, TokenBucket, estimate_tokens, format_duration


def test_token_bucket_refills_at_its_rate_and_may_go_into_debt():
    bucket = TokenBucket(capacity=100, rate_per_s=10, now=0.0)
    bucket.charge(150, now=0.0)
    assert bucket.level == -50
    assert bucket.seconds_until(10, now=0.0) == pytest.approx(6.0)
    assert bucket.refill(now=100.0) == 100  # capped


def test_concurrency_cap_refuses_then_frees():
    limiter = TenantLimiter((TenantConfig("t", max_concurrent=2),), now=0.0)
    leases = [limiter.acquire("t", 1, 0.0) for _ in range(2)]
    with pytest.raises(RateLimited) as refused:
        limiter.acquire("t", 1, 0.0)
    assert refused.value.limit == "requests"
    headers = refused.value.status.headers()
    assert headers["x-ratelimit-limit-requests"] == "2" and headers["x-ratelimit-remaining-requests"] == "0"
    limiter.release(leases[0], 10, 0.0)
    limiter.release(leases[0], 10, 0.0)  # twice is once
    assert limiter.in_flight("t") == 1
    limiter.acquire("t", 1, 0.0)


def test_tokens_per_minute_refuses_with_a_retry_hint_and_reconciles_real_usage():
    limiter = TenantLimiter((TenantConfig("t", tokens_per_minute=600),), now=0.0)  # 10 tokens/s, bucket 600
    lease = limiter.acquire("t", 100, 0.0)
    assert limiter.status("t", 0.0).remaining_tokens == 500
    limiter.release(lease, 600, 0.0)  # it really used 600: 500 more are charged
    assert limiter.status("t", 0.0).remaining_tokens == 0
    with pytest.raises(RateLimited) as refused:
        limiter.acquire("t", 50, 0.0)
    assert refused.value.limit == "tokens" and refused.value.retry_after_s == pytest.approx(5.0)
    headers = refused.value.status.headers()
    assert headers["x-ratelimit-limit-tokens"] == "600" and headers["x-ratelimit-remaining-tokens"] == "0"
    assert headers["x-ratelimit-reset-tokens"] == "1m0s"
    limiter.acquire("t", 50, 5.0)


def test_refused_or_unstarted_requests_cost_nothing():
    limiter = TenantLimiter((TenantConfig("t", tokens_per_minute=600),), now=0.0)
    lease = limiter.acquire("t", 300, 0.0)
    limiter.release(lease, 0, 0.0)
    assert limiter.status("t", 0.0).remaining_tokens == 600


def test_unlimited_tenants_have_no_headers():
    limiter = TenantLimiter((TenantConfig("free"),), now=0.0)
    for _ in range(1000):
        limiter.acquire("free", 10**6, 0.0)
    assert limiter.status("free", 0.0).headers() == {}


def test_estimates_and_durations():
    assert estimate_tokens(0) == 1 and estimate_tokens(9) == 3
    assert [format_duration(s) for s in (0.02, 1.0, 59.2, 360.0)] == ["20ms", "1s", "1m0s", "6m0s"]
