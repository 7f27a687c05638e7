"""Canary split: the observed share matches the weight, sessions stick, weights move sessions one way."""

import math
import random

import pytest

from shoal.router.traffic.split import Split


def binomial_bounds(n: int, p: float, sigmas: float = 5.0) -> tuple[float, float]:
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    return mean - sigmas * sd, mean + sigmas * sd


def test_random_draws_follow_the_weight():
    split, rng = Split("v1", "v2", 10.0), random.Random(0)
    canary = sum(split.choose(None, rng) == "v2" for _ in range(10_000))
    low, high = binomial_bounds(10_000, 0.10)
    assert low <= canary <= high  # 1000 +- 150


def test_a_session_key_always_lands_on_the_same_revision():
    split, rng = Split("v1", "v2", 50.0), random.Random(0)
    for key in (f"user-{i}" for i in range(200)):
        assert len({split.choose(key, rng) for _ in range(5)}) == 1


def test_session_keys_split_by_weight_too():
    split, rng = Split("v1", "v2", 10.0), random.Random(0)
    canary = sum(split.choose(f"conversation-{i}", rng) == "v2" for i in range(10_000))
    low, high = binomial_bounds(10_000, 0.10)
    assert low <= canary <= high


def test_raising_the_weight_only_moves_sessions_from_stable_to_canary():
    rng = random.Random(0)
    keys = [f"k{i}" for i in range(2000)]
    before = {k: Split("v1", "v2", 10.0).choose(k, rng) for k in keys}
    after = {k: Split("v1", "v2", 30.0).choose(k, rng) for k in keys}
    assert all(after[k] == "v2" for k in keys if before[k] == "v2")
    assert sum(v == "v2" for v in after.values()) > sum(v == "v2" for v in before.values())


def test_no_canary_or_zero_weight_sends_everything_to_stable():
    rng = random.Random(0)
    assert {Split("v1").choose(None, rng) for _ in range(100)} == {"v1"}
    assert {Split("v1", "v2", 0.0).choose(f"k{i}", rng) for i in range(100)} == {"v1"}
    assert Split("v1", "v2", 0.0).stable_weight == 100.0 and Split("v1", None, 40.0).stable_weight == 100.0


@pytest.mark.parametrize(("stable", "canary", "weight"), [("v1", "v2", -1.0), ("v1", "v2", 100.5), ("v1", "v1", 5.0)])
def test_bad_splits_are_refused(stable, canary, weight):
    with pytest.raises(ValueError):
        Split(stable, canary, weight)
