"""Which replica of a revision takes a request. Pure: loads in, an index out.

Least outstanding requests, weighted by what the last scrape said: the runtime's own queue adds to
the count, and the score grows as its KV cache fills (a full cache means preemptions). With prefix
affinity, requests with the same prompt head (or session) prefer one replica, found by rendezvous
hashing so adding a replica moves few keys, unless that replica is loaded past `max_load_factor`
times the average (bounded-load affinity): then plain least-loaded wins.
"""

import hashlib
import random
from dataclasses import dataclass

MIN_KV_FREE = 0.05  # a full cache scores as 20x the requests, not infinitely


@dataclass(frozen=True)
class Load:
    key: str  # the endpoint's identity (its target)
    outstanding: int  # requests this router has in flight there
    waiting: int = 0  # the runtime's queue, from the last scrape
    kv_usage: float = 0.0  # [0, 1], from the last scrape


def score(load: Load) -> float:
    return (load.outstanding + load.waiting + 1) / max(MIN_KV_FREE, 1.0 - load.kv_usage)


def pick(loads: list[Load], rng: random.Random, affinity_key: str | None = None, max_load_factor: float = 1.5) -> int:
    """Index of the chosen replica; `loads` must not be empty."""
    if affinity_key is not None and len(loads) > 1:
        preferred = max(range(len(loads)), key=lambda i: _rendezvous(affinity_key, loads[i].key))
        average = sum(load.outstanding for load in loads) / len(loads)
        if loads[preferred].outstanding <= max_load_factor * (average + 1):
            return preferred
    scores = [score(load) for load in loads]
    best = min(scores)
    return rng.choice([i for i, s in enumerate(scores) if s == best])


def _rendezvous(affinity_key: str, endpoint_key: str) -> int:
    digest = hashlib.blake2b(f"{affinity_key}\0{endpoint_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")
