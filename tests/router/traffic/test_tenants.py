"""Tenant limits: concurrency caps, token buckets with reconciliation, and OpenAI's rate-limit headers;
a pool's limiter: unlisted tenants are free there, and a new route changes limits without losing counts."""

import pytest

from shoal.router.config import TenantConfig
from shoal.router.traffic.tenants import (
    LimitStatus,
    RateLimited,
    TenantLimiter,
    TokenBucket,
    estimate_tokens,
    format_duration,
    tighter,
)


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


def test_a_tenant_the_limiter_does_not_list_is_unlimited_there():
    limiter = TenantLimiter((TenantConfig("t", max_concurrent=1),), now=0.0, scope="pool chat")
    leases = [limiter.acquire("other", 10**6, 0.0) for _ in range(100)]
    for lease in leases:
        limiter.release(lease, 10, 0.0)
    assert limiter.status("other", 0.0).headers() == {} and limiter.in_flight("other") == 0
    limiter.acquire("t", 1, 0.0)
    with pytest.raises(RateLimited, match="tenant t on pool chat on concurrent requests"):
        limiter.acquire("t", 1, 0.0)


def test_new_limits_keep_requests_in_flight_and_the_bucket_level():
    limiter = TenantLimiter((TenantConfig("t", max_concurrent=3, tokens_per_minute=600),), now=0.0)
    leases = [limiter.acquire("t", 100, 0.0) for _ in range(2)]  # 2 in flight, 400 tokens left
    limiter.reconfigure((TenantConfig("t", max_concurrent=2, tokens_per_minute=300),), now=0.0)
    assert limiter.in_flight("t") == 2 and limiter.status("t", 0.0).remaining_tokens == 300  # capped at the new size
    with pytest.raises(RateLimited):
        limiter.acquire("t", 1, 0.0)
    limiter.release(leases[0], 100, 0.0)
    assert limiter.in_flight("t") == 1
    limiter.reconfigure((TenantConfig("u", max_concurrent=1),), now=0.0)  # t is no longer limited here
    limiter.release(leases[1], 100, 0.0)  # released where it was taken, harmlessly
    assert limiter.tenants() == ["u"] and limiter.status("t", 0.0).headers() == {}


def test_the_same_limits_again_change_nothing():
    limiter = TenantLimiter((TenantConfig("t", tokens_per_minute=600),), now=0.0)
    limiter.acquire("t", 500, 0.0)
    limiter.reconfigure((TenantConfig("t", tokens_per_minute=600),), now=0.0)
    assert limiter.status("t", 0.0).remaining_tokens == 100 and limiter.in_flight("t") == 1


def test_the_tighter_of_two_limits_per_kind():
    wide = LimitStatus(
        limit_requests=10, remaining_requests=9, limit_tokens=1000, remaining_tokens=10, reset_tokens_s=5.0
    )
    pool = LimitStatus(
        limit_requests=1, remaining_requests=0, limit_tokens=None, remaining_tokens=None, reset_tokens_s=None
    )
    combined = tighter(wide, pool)
    assert (combined.limit_requests, combined.remaining_requests) == (1, 0)
    assert (combined.limit_tokens, combined.remaining_tokens, combined.reset_tokens_s) == (1000, 10, 5.0)
    unlimited = LimitStatus(None, None, None, None, None)
    assert tighter(unlimited, unlimited) == unlimited and tighter(unlimited, pool) == pool
