"""Pausing the engine, and work run on its thread between steps (weight updates, prefix-cache resets).

Event-loop side, `Admission`: while the engine is paused, new requests wait for the resume (up to
`pause_wait_s`) or, with no wait configured, are refused at once; either way a refused one is told
when to retry. Engine-thread side: the commands below, typed messages on the engine's inbox,
applied between steps (runtime/engine/async_engine.py):

- WAIT: what the engine holds runs to the end; the pause holds once nothing is left.
- KEEP: the step in flight is read, then no step runs: the requests keep their KV blocks and state
  and carry on after the resume, in the same engine, with whatever weights it has by then.
- ABORT: the step in flight is read, then every request ends with FINISH_REASON_ABORT.
"""

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shoal.runtime.errors import EngineUnavailableError

INITIAL_WEIGHTS_VERSION = "initial"
ABORTED_BY_PAUSE = "aborted by a pause"


class PauseMode(enum.Enum):
    WAIT = "wait"
    KEEP = "keep"
    ABORT = "abort"


@dataclass(frozen=True)
class LifecycleConfig:
    pause_wait_s: float = 60.0  # how long a new request waits for a resume; 0: refused at once
    retry_after_s: int = 1  # what a refused one is told
    weights_version: str = INITIAL_WEIGHTS_VERSION  # what the weights at start are called


class Admission:
    """Whether new requests may enter the engine; written and read on the event loop only."""

    def __init__(self, config: LifecycleConfig):
        self.config = config
        self.mode: PauseMode | None = None
        self._open = asyncio.Event()
        self._open.set()

    def close(self, mode: PauseMode) -> None:
        self.mode = mode
        self._open.clear()

    def open(self) -> None:
        self.mode = None
        self._open.set()

    async def enter(self) -> None:
        """Returns once requests may enter; raises EngineUnavailableError (with a retry hint) if the
        pause outlasts the wait."""
        if self._open.is_set():
            return
        if self.config.pause_wait_s > 0:
            try:
                await asyncio.wait_for(self._open.wait(), self.config.pause_wait_s)
                return
            except TimeoutError:
                pass
        raise EngineUnavailableError(
            f"the runtime is paused ({self.mode.value if self.mode else 'resuming'})", self.config.retry_after_s
        )


@dataclass(frozen=True)
class PauseCommand:
    mode: PauseMode
    done: asyncio.Future


@dataclass(frozen=True)
class ResumeCommand:
    done: asyncio.Future


@dataclass(frozen=True)
class EngineCall:
    """`run(engine)` on the engine thread while it is paused; its result (or error) goes to `done`.
    A call that changes the weights names their new version."""

    run: Callable[[Any], Any]
    done: asyncio.Future
    weights_version: str | None = None
