"""How long the runtime took to start, phase by phase: read by the one INFO line logged at start, the
`shoal:startup_phase_seconds` gauge and ModelInfo.startup.

The phases, in order: `import` (process start to the engine build: the interpreter, torch and the
rest), `model_load` (config, tokenizer, weights), `kv_cache` (on a GPU the profile run that sizes the
pool, then allocating it), `cuda_graphs` (capturing the decode graphs), `warmup` (synthetic requests,
runtime/warmup.py), and `total` (process start to serving). Triton compiles a kernel variant the first
time it runs, so compiling is spread over the phases that run the model: mostly kv_cache (the largest
prefill), cuda_graphs (each decode batch size) and warmup (everything else).
"""

import os
import time
from dataclasses import dataclass
from pathlib import Path

TOTAL = "total"


@dataclass(frozen=True)
class StartupBreakdown:
    seconds: dict[str, float]  # phase -> seconds, in the order they ran; TOTAL last

    def describe(self) -> str:
        """'12.3s to serve (import 2.1s, model_load 4.0s, ...)'."""
        parts = ", ".join(f"{phase} {s:.1f}s" for phase, s in self.seconds.items() if phase != TOTAL)
        return f"{self.seconds[TOTAL]:.1f}s to serve ({parts})"


class StartupClock:
    """Each `lap` closes a phase: the time since the previous lap, or since the clock started. A clock
    `since_process_start` started with the process, and its first phase is `import`."""

    def __init__(self, already_running_s: float = 0.0):
        self._started = self._last = time.perf_counter() - already_running_s
        self._seconds: dict[str, float] = {}

    @classmethod
    def since_process_start(cls) -> "StartupClock":
        clock = cls(process_age_s())
        clock.lap("import")
        return clock

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self._seconds[phase] = now - self._last
        self._last = now

    def breakdown(self) -> StartupBreakdown:
        """The phases so far, and the total up to now."""
        return StartupBreakdown({**self._seconds, TOTAL: time.perf_counter() - self._started})


def process_age_s() -> float:
    """Seconds since this process started, from /proc (Linux): the system's uptime less the process's
    start time since boot, both to the clock tick. 0 where /proc cannot be read."""
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        # Field 22 of /proc/self/stat; counted past the command name, which may hold spaces.
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        return max(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return 0.0
