"""For testing only: make a runtime slow or failing on purpose (`--fault-latency-ms`, `--fault-error-rate`),
or its /metrics unreadable (`--fault-metrics-unavailable`: it answers 503 while the probes and the
requests are served as ever, as when a scrape is blocked or its collector breaks).

The router's canary tests start a runtime with these flags to play a bad revision, or one the router
cannot judge. Off by default; a runtime started without the flags never builds a FaultInjection.
"""

import asyncio
import random
from dataclasses import dataclass, field


@dataclass
class FaultInjection:
    latency_s: float = 0.0  # added before each request starts generating
    error_rate: float = 0.0  # fraction of requests refused with INTERNAL
    metrics_unavailable: bool = False
    rng: random.Random = field(default_factory=random.Random, repr=False)

    @classmethod
    def from_settings(cls, latency_s: float, error_rate: float, metrics_unavailable: bool) -> "FaultInjection | None":
        if latency_s > 0 or error_rate > 0 or metrics_unavailable:
            return cls(latency_s, error_rate, metrics_unavailable)
        return None

    async def next_fault(self) -> str | None:
        """Waits the injected latency; returns an error message when this request is to fail."""
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        if self.rng.random() < self.error_rate:
            return "injected fault (--fault-error-rate, for testing only)"
        return None
