"""For testing only: make a runtime slow or failing on purpose (`--fault-latency-ms`, `--fault-error-rate`).

The router's canary tests start a runtime with these flags to play a bad revision. Off by default;
a runtime started without the flags never builds a FaultInjection.
"""

import asyncio
import random
from dataclasses import dataclass, field


@dataclass
class FaultInjection:
    latency_s: float = 0.0  # added before each request starts generating
    error_rate: float = 0.0  # fraction of requests refused with INTERNAL
    rng: random.Random = field(default_factory=random.Random, repr=False)

    @classmethod
    def from_settings(cls, latency_s: float, error_rate: float) -> "FaultInjection | None":
        return cls(latency_s, error_rate) if latency_s > 0 or error_rate > 0 else None

    async def next_fault(self) -> str | None:
        """Waits the injected latency; returns an error message when this request is to fail."""
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        if self.rng.random() < self.error_rate:
            return "injected fault (--fault-error-rate, for testing only)"
        return None
