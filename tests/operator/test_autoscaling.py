"""The autoscaler's decision, a pure function: the HPA's arithmetic per signal, its stabilization
windows and step limits, over traces of load (no oscillation), and the edges: scale to zero when
idle, from zero when the router holds requests, a rollback's cool-down, figures missing."""

from collections.abc import Iterable
from dataclasses import replace

import pytest

from shoal.operator.autoscale.decide import ScaleDecision, ScaleHistory, ScaleInputs, decide_scale
from shoal.operator.router_client import RouterLoad
from shoal.operator.spec import AutoscalingSpec, MetricTarget, ScalingRules

T0 = 1_000_000.0
KV = AutoscalingSpec(max_replicas=20, metrics=(MetricTarget("kvCacheUsage", 0.8),))
WAITING = AutoscalingSpec(max_replicas=20, metrics=(MetricTarget("waitingPerReplica", 2.0),))
TTFT = AutoscalingSpec(max_replicas=20, metrics=(MetricTarget("ttftP95", 1.0),))
BOTH = AutoscalingSpec(max_replicas=20)  # the default metrics: kvCacheUsage 0.8, waitingPerReplica 2
UNREACHABLE = RouterLoad(answered=0, missed=("http://10.0.0.9:8002: ClientConnectorError",))


def load(ready: int, **figures) -> RouterLoad:
    """Busy unless told otherwise (a request in the window), so the idle rule stays out of the way."""
    return RouterLoad(ready_replicas=ready, replicas=ready, **{"requests": 10, **figures})


def once(
    spec: AutoscalingSpec, replicas: int, seen: RouterLoad, history: ScaleHistory | None = None, now=T0, **inputs
) -> ScaleDecision:
    """One decision; without a history, the operator's first."""
    return decide_scale(spec, ScaleInputs(replicas, seen, now, **inputs), history or ScaleHistory())


# A history whose windows have all been seen, as after an hour of decisions.
SETTLED = ScaleHistory(started=T0 - 3600, last_busy=T0)


# --- one decision: the arithmetic per signal


@pytest.mark.parametrize(
    "spec, replicas, seen, expected",
    [
        (KV, 4, load(4, kv_cache_usage=0.96), 5),  # ceil(4 x 0.96 / 0.8)
        (KV, 4, load(4, kv_cache_usage=0.84), 4),  # 5 % above target: within the tolerance
        (KV, 6, load(6, kv_cache_usage=0.2), 2),  # ceil(6 x 0.25): kvCacheUsage scales down too
        (WAITING, 2, load(2, waiting_requests=9, held_requests=3), 6),  # 12 waiting / target 2
        (WAITING, 5, load(5, waiting_requests=1), 5),  # below target: no say, the pool holds
        (TTFT, 3, load(3, ttft_p95_s=2.5), 8),  # ceil(3 x 2.5)
        (TTFT, 3, load(3, ttft_p95_s=0.1), 3),  # a fast first token says nothing of a smaller pool
    ],
)
def test_each_signal_recommends_as_the_hpa_would(spec, replicas, seen, expected):
    spec = replace(spec, scale_up=ScalingRules(0, 100, None), scale_down=ScalingRules(0, 100, None))
    assert once(spec, replicas, seen, SETTLED).replicas == expected


def test_the_largest_recommendation_wins_and_is_named_with_its_value():
    spec = AutoscalingSpec(
        max_replicas=20, metrics=(MetricTarget("kvCacheUsage", 0.8), MetricTarget("waitingPerReplica", 2.0))
    )
    decision = once(spec, 4, load(4, kv_cache_usage=0.9, waiting_requests=26))  # kv: 5, waiting: 13
    assert decision.replicas == 8  # 13, limited to 4 more per period (the default step)
    assert decision.reason == "ScaledUp"
    assert decision.message == (
        "waitingPerReplica 6.5 (target 2) recommends 13; 8 for now: the scale-up step limit (15s periods)"
    )
    assert [(r.signal, r.replicas) for r in decision.readings] == [("kvCacheUsage", 5), ("waitingPerReplica", 13)]


def test_a_queue_at_its_target_keeps_the_pool_from_shrinking():
    spec = AutoscalingSpec(
        max_replicas=20,
        metrics=(MetricTarget("kvCacheUsage", 0.8), MetricTarget("waitingPerReplica", 2.0)),
        scale_down=ScalingRules(0, None, 100),
    )
    assert once(spec, 6, load(6, kv_cache_usage=0.2, waiting_requests=12), SETTLED).replicas == 6
    assert once(spec, 6, load(6, kv_cache_usage=0.2, waiting_requests=0), SETTLED).replicas == 2


def test_no_figures_hold_the_pool():
    decision = once(KV, 3, UNREACHABLE)
    assert (decision.replicas, decision.active, decision.reason) == (3, False, "RouterLoadUnavailable")
    assert "ClientConnectorError" in decision.message and decision.history.recommendations == ()
    # The router answers but has no TTFT figure yet (no request timed in its window).
    decision = once(TTFT, 3, load(3, ttft_p95_s=None), SETTLED)
    assert (decision.replicas, decision.active, decision.reason) == (3, True, "WithinTarget")
    assert decision.message == "no signal measured yet"


def test_spec_replicas_outside_the_bounds_are_brought_in_at_once_without_figures():
    spec = replace(KV, min_replicas=2, max_replicas=5)
    assert (once(spec, 9, UNREACHABLE).replicas, once(spec, 9, UNREACHABLE).reason) == (5, "AboveMaxReplicas")
    assert (once(spec, 0, UNREACHABLE).replicas, once(spec, 0, UNREACHABLE).reason) == (2, "BelowMinReplicas")


def test_the_bounds_limit_a_recommendation():
    spec = replace(KV, max_replicas=6, scale_up=ScalingRules(0, 100, None))
    decision = once(spec, 4, load(4, kv_cache_usage=1.0))  # ceil(4 x 1.25) = 5: within
    assert decision.replicas == 5
    decision = once(spec, 4, load(8, kv_cache_usage=1.0))  # ceil(8 x 1.25) = 10
    assert (decision.replicas, decision.reason) == (6, "ScaledUp") and decision.message.endswith("6 at most")
    decision = once(spec, 6, load(6, kv_cache_usage=1.0))
    assert (decision.replicas, decision.reason) == (6, "AtMaxReplicas")


# --- traces: the pool as it would follow a load, one decision per pass


def pool_under(replicas: int, demand: float) -> RouterLoad:
    """A pool whose demand (in replicas' worth) fills each replica's KV cache evenly; what its
    replicas cannot hold queues, 4 requests for each replica's worth."""
    return load(
        replicas, kv_cache_usage=min(1.0, demand / replicas), waiting_requests=round(max(0, demand - replicas) * 4)
    )


def trace(spec: AutoscalingSpec, demand: Iterable[float], start: int, figures=pool_under, every_s=15.0) -> list[int]:
    """The pool's size at the start, then after each pass."""
    history, replicas, sizes = SETTLED, start, [start]
    for i, d in enumerate(demand):
        decision = decide_scale(spec, ScaleInputs(replicas, figures(replicas, d), T0 + i * every_s), history)
        replicas, history = decision.replicas, decision.history
        sizes.append(replicas)
    return sizes


def moves(sizes: list[int]) -> list[str]:
    """The direction of each change of size, in order."""
    return [("up" if b > a else "down") for a, b in zip(sizes, sizes[1:], strict=False) if a != b]


def test_a_step_up_in_load_is_followed_up_in_steps_and_never_back():
    sizes = trace(BOTH, [2.0] * 4 + [8.0] * 20, start=3)  # needs ceil(2 / 0.8) = 3, then ceil(8 / 0.8) = 10
    assert sizes[:5] == [3, 3, 3, 3, 3]
    assert sizes[5:9] == [7, 9, 10, 10]  # at most 4 more (or double) per 15 s, then as the KV cache says
    assert moves(sizes) == ["up", "up", "up"] and sizes[-1] == 10


def test_a_spike_scales_up_once_and_down_once_after_the_window():
    sizes = trace(BOTH, [2.0] * 4 + [9.0] + [2.0] * 40, start=3)
    assert moves(sizes) == ["up", "down"]
    assert sizes[5:25] == [7] * 20  # held for the scale-down window (300 s), then back
    assert sizes[25:] == [3] * 21


def test_a_spike_shorter_than_the_scale_up_window_moves_nothing():
    spec = replace(BOTH, scale_up=ScalingRules(60, 4, 100))
    assert moves(trace(spec, [2.0] * 4 + [9.0] * 3 + [2.0] * 10, start=3)) == []
    # One that lasts the window does, once every recommendation of the window asks for more.
    sizes = trace(spec, [2.0] * 4 + [9.0] * 6, start=3)
    assert sizes[:8] == [3] * 8 and sizes[8] == 7 and moves(sizes) == ["up", "up"]


def test_a_slow_decline_only_ever_scales_down():
    sizes = trace(BOTH, [8.0 - 0.05 * i for i in range(120)] + [2.0] * 40, start=10)
    assert moves(sizes) and set(moves(sizes)) == {"down"}
    assert sizes[-1] == 3  # ceil(2 / 0.8)


def test_flapping_load_does_not_make_the_pool_flap():
    sizes = trace(BOTH, [4.0, 6.0] * 40, start=5)
    assert moves(sizes) == ["up"] and sizes[-1] == 7  # 5 x 1.25 up at once; never back within the window
    # Within the tolerance of the target, nothing moves at all.
    assert moves(trace(BOTH, [4 * 0.76, 4 * 0.84] * 40, start=4)) == []


def test_a_queue_signal_alone_holds_a_steady_pool_rather_than_oscillating():
    """A queue reads zero whenever the pool keeps up, however big it is: were zero a reason to
    shrink, the pool would shrink until requests queue, grow, and shrink again."""
    sizes = trace(WAITING, [7.0] * 100, start=4)
    # 12 waiting / target 2: 6 replicas; then 4 wait, 0.67 a replica, under the target: it holds.
    assert moves(sizes) == ["up"] and sizes[-1] == 6


# --- the edges


def test_the_step_limits_count_from_the_start_of_the_period():
    spec = replace(BOTH, scale_up=ScalingRules(0, None, 100, period_s=60))
    sizes = trace(spec, [16.0] * 12, start=2)  # wants 20: may double once per minute
    assert sizes == [2, 4, 4, 4, 4, 8, 8, 8, 8, 16, 16, 16, 16]
    spec = replace(BOTH, scale_down=ScalingRules(0, 1, None, period_s=30))
    assert trace(spec, [1.0] * 8, start=6) == [6, 5, 5, 4, 4, 3, 3, 2, 2]


def test_given_step_limits_replace_both_defaults():
    from shoal.operator.spec import parse_pool_spec

    behavior = {"scaleDown": {"maxStepReplicas": 1}, "scaleUp": {"stabilizationWindowSeconds": 30}}
    parsed = parse_pool_spec({"model": {"revision": "v1"}, "autoscaling": {"maxReplicas": 8, "behavior": behavior}})
    assert parsed.autoscaling.scale_down == ScalingRules(300, 1, None, 15)
    assert parsed.autoscaling.scale_up == ScalingRules(30, 4, 100, 15)


def test_an_idle_pool_keeps_one_replica_then_scales_to_zero_at_once():
    spec = replace(KV, min_replicas=0, scale_to_zero_after_s=600)
    history = ScaleHistory(started=T0 - 3600, last_busy=T0)
    quiet = load(4, requests=0, kv_cache_usage=0.0)
    decision = once(spec, 4, quiet, history, now=T0 + 400)
    assert (decision.replicas, decision.reason) == (1, "ScaledDown")  # kv says 0; not idle yet: one stays
    decision = once(spec, 1, quiet, decision.history, now=T0 + 600)
    assert (decision.replicas, decision.reason) == (0, "Idle") and decision.message.startswith("no request for 600s")
    # From 4 straight to 0, past the step limit and the scale-down window, once idle.
    decision = once(spec, 4, quiet, history, now=T0 + 600)
    assert decision.replicas == 0
    # With minReplicas above zero, idle is minReplicas.
    assert once(replace(spec, min_replicas=2), 4, quiet, history, now=T0 + 600).replicas == 2


def test_any_request_restarts_the_idle_period():
    spec = replace(KV, min_replicas=0, scale_to_zero_after_s=600)
    history = ScaleHistory(started=T0 - 3600, last_busy=T0)
    busy = once(spec, 1, load(1, requests=1, kv_cache_usage=0.0), history, now=T0 + 500).history
    assert once(spec, 1, load(1, requests=0, kv_cache_usage=0.0), busy, now=T0 + 700).replicas == 1


def test_requests_held_at_zero_bring_a_replica_whatever_the_windows():
    spec = replace(KV, min_replicas=0, scale_up=ScalingRules(120, None, 100))
    at_zero = RouterLoad(held_requests=3, oldest_held_s=0.4)
    decision = once(spec, 0, at_zero, SETTLED)
    assert (decision.replicas, decision.reason) == (1, "ScaledFromZero")
    assert decision.message == "3 requests held or waiting with no replica"
    # With the queue as a signal, as many as the held requests call for, within the step limit.
    spec = replace(WAITING, min_replicas=0)
    assert once(spec, 0, RouterLoad(held_requests=7), SETTLED).replicas == 4  # ceil(7 / 2), 4 per step
    # Nothing held: zero stays zero, even with requests still in the routers' window.
    decision = once(spec, 0, RouterLoad(requests=5), SETTLED)
    assert (decision.replicas, decision.reason) == (0, "Idle")


def test_no_scale_down_during_a_rollbacks_cooldown_but_scale_up_goes_on():
    spec = replace(KV, scale_down=ScalingRules(0, None, 100))
    low, high = load(6, kv_cache_usage=0.1), load(6, kv_cache_usage=1.0)
    cooling = {"last_rollback_at": T0 - 100}
    decision = once(spec, 6, low, SETTLED, **cooling)
    assert (decision.replicas, decision.reason) == (6, "RollbackCooldown")
    assert once(spec, 6, high, SETTLED, **cooling).replicas == 8
    assert once(spec, 6, low, SETTLED, last_rollback_at=T0 - 300).replicas == 1


def test_a_partial_load_or_starting_replicas_hold_a_scale_down_only():
    spec = replace(KV, scale_down=ScalingRules(0, None, 100))
    partial = replace(load(6, kv_cache_usage=0.1), answered=1, missed=("http://10.0.0.3:8002: TimeoutError",))
    decision = once(spec, 6, partial, SETTLED)
    assert (decision.replicas, decision.reason) == (6, "PartialLoad") and "TimeoutError" in decision.message
    assert once(spec, 6, replace(partial, kv_cache_usage=1.0), SETTLED).replicas == 8
    starting = load(2, kv_cache_usage=0.1)  # 6 asked for, 2 ready: the 4 starting are not measured yet
    decision = once(spec, 6, starting, SETTLED)
    assert (decision.replicas, decision.reason) == (6, "ReplicasStarting")
    assert once(spec, 6, replace(starting, kv_cache_usage=1.0), SETTLED).replicas == 6  # ceil(2 x 1.25)


def test_no_scale_to_zero_under_a_rollout():
    spec = replace(KV, min_replicas=0, scale_to_zero_after_s=60)
    quiet = load(2, requests=0, kv_cache_usage=0.0)
    history = ScaleHistory(started=T0 - 3600, last_busy=T0 - 600)
    assert once(spec, 2, quiet, history, rollout_active=True).replicas == 1
    assert once(spec, 2, quiet, history).replicas == 0


def test_after_a_restart_a_scale_down_waits_a_whole_window_a_scale_up_does_not():
    decision = once(KV, 6, load(6, kv_cache_usage=0.1))  # a fresh history: the operator just started
    assert (decision.replicas, decision.reason) == (6, "Stabilizing")
    assert decision.history.started == T0
    later = once(KV, 6, load(6, kv_cache_usage=0.1), decision.history, now=T0 + 300)
    assert later.replicas == 1
    assert once(KV, 6, load(6, kv_cache_usage=1.0)).replicas == 8


def test_the_history_keeps_only_what_its_windows_reach():
    history = SETTLED
    for i in range(100):
        history = once(KV, 3, load(3, kv_cache_usage=0.8), history, now=T0 + 15 * i).history
    assert len(history.recommendations) == 300 // 15
