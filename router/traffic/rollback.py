"""Rollback rules: does the canary misbehave, compared with stable and with fixed limits?

Each rule reads its own window and acts only with enough samples; it returns a Breach naming the
rule and the values it saw, or None. What happens on a breach (canary weight to 0, the verdict
kept until someone resets it) is rollout.py's job.
"""

from collections.abc import Callable

from shoal.route_contract import (
    Breach,
    ErrorRateRule,
    KvFreeRule,
    LatencyRatioRule,
    OomRule,
    PreemptionRule,
    RollbackRule,
)
from shoal.router.traffic.measurements import RevisionStats

# (revision, window_s) -> that revision's stats over the window, all QoS classes together.
StatsFor = Callable[[str, float], RevisionStats]


def evaluate(rules: tuple[RollbackRule, ...], canary: str, stable: str, stats_for: StatsFor) -> list[Breach]:
    breaches = []
    for rule in rules:
        breach = _CHECKS[type(rule)](rule, stats_for(canary, rule.window_s), stats_for(stable, rule.window_s))
        if breach is not None:
            breaches.append(breach)
    return breaches


def _latency_ratio(rule: LatencyRatioRule, canary: RevisionStats, stable: RevisionStats) -> Breach | None:
    canary_values, stable_values = canary.latencies[rule.metric], stable.latencies[rule.metric]
    if len(canary_values) < rule.min_samples or len(stable_values) < rule.min_samples:
        return None
    canary_q, stable_q = canary.quantile(rule.metric, rule.quantile), stable.quantile(rule.metric, rule.quantile)
    if canary_q > rule.max_ratio * stable_q and canary_q - stable_q >= rule.min_difference_s:
        return Breach(
            rule.name,
            {
                "canary_s": canary_q,
                "stable_s": stable_q,
                "ratio": canary_q / stable_q if stable_q > 0 else float("inf"),
                "canary_samples": len(canary_values),
                "stable_samples": len(stable_values),
            },
            f"canary <= {rule.max_ratio:g} x stable over {rule.window_s:g}s",
        )
    return None


def _error_rate(rule: ErrorRateRule, canary: RevisionStats, stable: RevisionStats) -> Breach | None:
    if canary.requests < rule.min_samples:
        return None
    observed = {
        "canary_error_rate": canary.error_rate,
        "canary_errors": canary.errors,
        "canary_requests": canary.requests,
    }
    if rule.max_rate is not None and canary.error_rate > rule.max_rate:
        return Breach(rule.name, observed, f"<= {rule.max_rate:g} over {rule.window_s:g}s")
    if rule.max_over_stable is not None and stable.requests >= rule.min_samples:
        if canary.error_rate > stable.error_rate + rule.max_over_stable:
            observed |= {"stable_error_rate": stable.error_rate, "stable_requests": stable.requests}
            return Breach(rule.name, observed, f"<= stable + {rule.max_over_stable:g} over {rule.window_s:g}s")
    return None


def _preemptions(rule: PreemptionRule, canary: RevisionStats, stable: RevisionStats) -> Breach | None:
    if canary.preemptions > rule.max_count:
        return Breach(
            rule.name, {"canary_preemptions": canary.preemptions}, f"<= {rule.max_count} over {rule.window_s:g}s"
        )
    return None


def _oom_errors(rule: OomRule, canary: RevisionStats, stable: RevisionStats) -> Breach | None:
    if canary.oom_errors > rule.max_count:
        return Breach(
            rule.name, {"canary_oom_errors": canary.oom_errors}, f"<= {rule.max_count} over {rule.window_s:g}s"
        )
    return None


def _kv_free(rule: KvFreeRule, canary: RevisionStats, stable: RevisionStats) -> Breach | None:
    if len(canary.kv_free) < rule.min_samples:
        return None
    mean = canary.kv_free_mean
    if mean < rule.min_free:
        return Breach(
            rule.name,
            {"canary_kv_free": mean, "scrapes": len(canary.kv_free)},
            f">= {rule.min_free:g} over {rule.window_s:g}s",
        )
    return None


_CHECKS = {
    LatencyRatioRule: _latency_ratio,
    ErrorRateRule: _error_rate,
    PreemptionRule: _preemptions,
    OomRule: _oom_errors,
    KvFreeRule: _kv_free,
}
