"""A pool's load as one router replica sees it (GET /admin/pools/{pool}/load), what the operator sizes
the pool from: its replicas, the requests the router holds while none is ready (a pool scaled to
zero wakes on them), the runtimes' own queues and KV caches as last scraped, and the requests and
TTFT the router measured over the window. Typed here, JSON here, so the operator reads it without
importing the router.
"""

import dataclasses
from dataclasses import dataclass

from shoal.fields import FieldError, Fields


@dataclass(frozen=True)
class PoolLoad:
    pool: str
    ready_replicas: int  # runtimes whose last health probe answered SERVING, every revision
    replicas: int  # runtimes the route lists, ready or not
    held_requests: int  # waiting at the router for a first ready runtime (the route's cold_start)
    oldest_held_s: float  # how long the oldest of them has waited; 0 with none held
    waiting_requests: int  # the runtimes' num_requests_waiting, summed (those whose /metrics answer)
    running_requests: int  # the runtimes' num_requests_running, summed
    kv_cache_usage: float  # [0, 1], the mean over ready runtimes whose /metrics answer; 0 with none
    ttft_p95_s: float | None  # every revision and QoS class over the window; None without samples
    requests: int  # finished over the window (answered in full, or failed by a runtime)
    window_s: float

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, body) -> "PoolLoad":
        """Raises FieldError naming the field; keys a newer router may add are passed over."""
        f = Fields(body, "load", FieldError)
        return cls(
            pool=f.get("pool", str),
            ready_replicas=f.get("ready_replicas", int, minimum=0),
            replicas=f.get("replicas", int, minimum=0),
            held_requests=f.get("held_requests", int, minimum=0),
            oldest_held_s=f.get("oldest_held_s", float, minimum=0.0),
            waiting_requests=f.get("waiting_requests", int, minimum=0),
            running_requests=f.get("running_requests", int, minimum=0),
            kv_cache_usage=f.get("kv_cache_usage", float, minimum=0.0, maximum=1.0),
            ttft_p95_s=f.get("ttft_p95_s", float, None, minimum=0.0),
            requests=f.get("requests", int, minimum=0),
            window_s=f.get("window_s", float, minimum=0.0),
        )
