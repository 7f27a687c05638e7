"""The balancer: least outstanding, weighted by the runtime's queue and KV usage; bounded prefix affinity."""

import collections
import random

from shoal.router.backends.balancer import Load, pick


def test_least_outstanding_wins():
    loads = [Load("a", 3), Load("b", 1), Load("c", 2)]
    assert pick(loads, random.Random(0)) == 1


def test_the_runtimes_queue_and_a_full_kv_cache_count_against_it():
    assert pick([Load("a", 1, waiting=5), Load("b", 2)], random.Random(0)) == 1
    assert pick([Load("a", 1, kv_usage=0.95), Load("b", 3, kv_usage=0.1)], random.Random(0)) == 1


def test_ties_are_spread():
    chosen = collections.Counter(pick([Load("a", 0), Load("b", 0)], random.Random(i)) for i in range(200))
    assert chosen[0] > 50 and chosen[1] > 50


def test_affinity_keeps_a_prefix_on_one_replica_and_spreads_prefixes():
    loads = [Load(t, 0) for t in ("a", "b", "c", "d")]
    rng = random.Random(0)
    assert len({pick(loads, rng, affinity_key="system prompt 1") for _ in range(50)}) == 1
    spread = collections.Counter(pick(loads, rng, affinity_key=f"prefix {i}") for i in range(400))
    assert len(spread) == 4 and min(spread.values()) > 50


def test_affinity_gives_way_to_load_past_the_cap():
    rng = random.Random(0)
    idle = [Load("a", 0), Load("b", 0)]
    preferred = pick(idle, rng, affinity_key="k")
    loaded = [Load(load.key, 10 if i == preferred else 0) for i, load in enumerate(idle)]
    assert pick(loaded, rng, affinity_key="k", max_load_factor=1.5) != preferred
    assert pick(loaded, rng, affinity_key="k", max_load_factor=100) == preferred
