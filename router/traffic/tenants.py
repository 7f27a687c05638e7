"""Per-tenant limits: concurrent requests, and a token bucket on prompt + completion tokens.

A request is admitted while the tenant is under its concurrency cap and its bucket holds at least
the request's estimated prompt tokens (the router has no tokenizer, so ~4 characters a token); the
estimate is taken at once and the difference to the real usage when the request ends, which may
leave the bucket in debt until it refills. Refusals carry what OpenAI's `x-ratelimit-*` headers say.

The router has one limiter for its tenants and one per pool for the limits a route sets on that
pool; a tenant a limiter does not list is unlimited there. A pool's limits change in place
(`reconfigure`), so requests in flight and bucket levels carry over a route update.
"""

import math
from dataclasses import dataclass

from shoal.route_contract import TenantLimit

CHARS_PER_TOKEN = 4


def estimate_tokens(num_chars: int) -> int:
    return max(1, math.ceil(num_chars / CHARS_PER_TOKEN))


class TokenBucket:
    def __init__(self, capacity: float, rate_per_s: float, now: float):
        self.capacity = capacity
        self.rate_per_s = rate_per_s
        self.level = capacity
        self._updated = now

    def refill(self, now: float) -> float:
        self.level = min(self.capacity, self.level + (now - self._updated) * self.rate_per_s)
        self._updated = now
        return self.level

    def charge(self, tokens: float, now: float) -> None:
        """Takes tokens, going into debt if need be (usage is known only afterwards)."""
        self.refill(now)
        self.level -= tokens

    def seconds_until(self, tokens: float, now: float) -> float:
        """Until the bucket holds `tokens` (0 if it does now)."""
        missing = min(tokens, self.capacity) - self.refill(now)
        return max(0.0, missing / self.rate_per_s)


@dataclass(frozen=True)
class LimitStatus:
    """The numbers behind the x-ratelimit-* headers; None where the tenant has no such limit."""

    limit_requests: int | None
    remaining_requests: int | None
    limit_tokens: int | None
    remaining_tokens: int | None
    reset_tokens_s: float | None

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.limit_requests is not None:
            headers["x-ratelimit-limit-requests"] = str(self.limit_requests)
            headers["x-ratelimit-remaining-requests"] = str(self.remaining_requests)
            headers["x-ratelimit-reset-requests"] = "1s"  # a concurrency slot: free when a request ends
        if self.limit_tokens is not None:
            headers["x-ratelimit-limit-tokens"] = str(self.limit_tokens)
            headers["x-ratelimit-remaining-tokens"] = str(self.remaining_tokens)
            headers["x-ratelimit-reset-tokens"] = format_duration(self.reset_tokens_s)
        return headers


def tighter(a: LimitStatus, b: LimitStatus) -> LimitStatus:
    """Where two limiters apply (the router's and the pool's): per kind, the limit with less left."""
    requests = min((s for s in (a, b) if s.limit_requests is not None), key=lambda s: s.remaining_requests, default=a)
    tokens = min((s for s in (a, b) if s.limit_tokens is not None), key=lambda s: s.remaining_tokens, default=a)
    return LimitStatus(
        requests.limit_requests,
        requests.remaining_requests,
        tokens.limit_tokens,
        tokens.remaining_tokens,
        tokens.reset_tokens_s,
    )


class RateLimited(Exception):
    def __init__(self, tenant: str, limit: str, message: str, retry_after_s: float, status: LimitStatus):
        super().__init__(message)
        self.tenant = tenant
        self.limit = limit  # "requests" (concurrency) or "tokens"
        self.retry_after_s = retry_after_s
        self.status = status


class _Tenant:
    def __init__(self, config: TenantLimit, now: float):
        self.config = config
        self.in_flight = 0
        self.bucket = _bucket(config, now)

    def reconfigure(self, config: TenantLimit, now: float) -> None:
        """New limits; requests in flight stay counted and a bucket keeps its level (up to its new size)."""
        if config == self.config:
            return
        bucket = _bucket(config, now)
        if bucket is not None and self.bucket is not None:
            bucket.level = min(bucket.capacity, self.bucket.refill(now))
        self.config, self.bucket = config, bucket


def _bucket(config: TenantLimit, now: float) -> TokenBucket | None:
    if config.tokens_per_minute is None:
        return None
    # A route's limits have no burst of their own (router/config.py's TenantConfig may): a minute's worth.
    burst = getattr(config, "token_burst", None)
    return TokenBucket(burst or config.tokens_per_minute, config.tokens_per_minute / 60.0, now)


@dataclass
class Lease:
    tenant: str
    estimated_tokens: int
    state: _Tenant | None  # None: the limiter does not limit this tenant
    released: bool = False


class TenantLimiter:
    def __init__(self, tenants: tuple[TenantLimit, ...], now: float, scope: str = ""):
        self.scope = scope  # where the limits apply, for messages: "" (router-wide) or "pool X"
        self._tenants = {t.name: _Tenant(t, now) for t in tenants}

    def reconfigure(self, tenants: tuple[TenantLimit, ...], now: float) -> None:
        """The tenants and limits a new route lists; a lease taken before is released where it was taken."""
        states = {}
        for config in tenants:
            state = self._tenants.get(config.name)
            if state is None:
                state = _Tenant(config, now)
            else:
                state.reconfigure(config, now)
            states[config.name] = state
        self._tenants = states

    def acquire(self, tenant: str, estimated_tokens: int, now: float) -> Lease:
        """Raises RateLimited when the tenant is at its concurrency cap or out of tokens."""
        state = self._tenants.get(tenant)
        if state is None:
            return Lease(tenant, estimated_tokens, None)
        where = f" on {self.scope}" if self.scope else ""
        cap = state.config.max_concurrent
        if cap is not None and state.in_flight >= cap:
            raise RateLimited(
                tenant,
                "requests",
                f"Rate limit reached for tenant {tenant}{where} on concurrent requests: limit {cap}, in flight "
                f"{state.in_flight}. "
                "Please retry when one of your requests has finished.",
                1.0,
                self.status(tenant, now),
            )
        if state.bucket is not None:
            wait_s = state.bucket.seconds_until(estimated_tokens, now)
            if wait_s > 0:
                raise RateLimited(
                    tenant,
                    "tokens",
                    f"Rate limit reached for tenant {tenant}{where} on tokens per min: limit "
                    f"{state.config.tokens_per_minute}, "
                    f"remaining {max(0, math.floor(state.bucket.level))}, requested ~{estimated_tokens}. "
                    f"Please try again in {format_duration(wait_s)}.",
                    wait_s,
                    self.status(tenant, now),
                )
            state.bucket.charge(estimated_tokens, now)
        state.in_flight += 1
        return Lease(tenant, estimated_tokens, state)

    def release(self, lease: Lease, used_tokens: int | None, now: float) -> None:
        """The request ended; `used_tokens` is prompt + completion (None if unknown: the estimate stands)."""
        state = lease.state
        if lease.released or state is None:
            return
        lease.released = True
        state.in_flight -= 1
        if state.bucket is not None and used_tokens is not None:
            state.bucket.charge(used_tokens - lease.estimated_tokens, now)

    def status(self, tenant: str, now: float) -> LimitStatus:
        state = self._tenants.get(tenant)
        cap = state.config.max_concurrent if state is not None else None
        bucket = state.bucket if state is not None else None
        level = bucket.refill(now) if bucket is not None else None
        return LimitStatus(
            limit_requests=cap,
            remaining_requests=max(0, cap - state.in_flight) if cap is not None else None,
            limit_tokens=int(bucket.capacity) if bucket is not None else None,
            remaining_tokens=max(0, math.floor(level)) if bucket is not None else None,
            reset_tokens_s=bucket.seconds_until(bucket.capacity, now) if bucket is not None else None,
        )

    def tenants(self) -> list[str]:
        return list(self._tenants)

    def in_flight(self, tenant: str) -> int:
        state = self._tenants.get(tenant)
        return state.in_flight if state is not None else 0


def format_duration(seconds: float) -> str:
    """OpenAI's reset format: '20ms', '1s', '6m0s'."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    seconds = math.ceil(seconds)
    minutes, rest = divmod(seconds, 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"
