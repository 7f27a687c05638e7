"""One request's state inside the engine: its tokens, how far the KV cache has computed them, its status.

Only the scheduler writes it (engine/scheduler.py): it appends sampled tokens, advances the computed
count, and sets the status and finish reason. Its KV blocks are the block manager's, keyed by
request id; its seeded generator is the worker's.
"""

import enum
from dataclasses import dataclass, field

import xgrammar as xgr

from shoal.runtime.sampling.params import SamplingParams


class RequestStatus(enum.Enum):
    WAITING = "waiting"  # queued, or preempted and queued again
    RUNNING = "running"
    FINISHED = "finished"


class FinishReason(enum.Enum):
    STOP = "stop"  # EOS, stop token or stop string
    LENGTH = "length"  # max_tokens or the context window
    ABORT = "abort"  # cancelled by the client or the server


@dataclass(eq=False)
class Request:
    request_id: str
    prompt_token_ids: list[int]
    sampling: SamplingParams
    max_tokens: int  # resolved from sampling.max_tokens and the context window
    priority: int = 0  # lower is served first and preempted last
    arrival_time: float = 0.0
    # Prompt followed by the generated tokens; after a preemption all of it is recomputed.
    token_ids: list[int] = field(default_factory=list)
    num_computed_tokens: int = 0  # tokens whose K/V sit in the cache (or are being computed)
    # Tokens sampled on the device whose ids the host has not read yet (async scheduling: at most 1).
    num_pending_tokens: int = 0
    num_cached_tokens: int = 0  # of the prompt, found in the prefix cache at admission
    status: RequestStatus = RequestStatus.WAITING
    finish_reason: FinishReason | None = None
    stop_reason: str | int | None = None
    num_preemptions: int = 0
    # Its grammar's state, for a constrained request (sampling.structured): fed each appended token.
    grammar: xgr.GrammarMatcher | None = None

    def __post_init__(self) -> None:
        if not self.token_ids:
            self.token_ids = list(self.prompt_token_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - len(self.prompt_token_ids)

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[len(self.prompt_token_ids) :]

    @property
    def num_uncomputed_tokens(self) -> int:
        """Tokens to feed the model: known ones not yet computed, plus any still in flight."""
        return len(self.token_ids) + self.num_pending_tokens - self.num_computed_tokens

    @property
    def is_generation_done(self) -> bool:
        """Every token it may produce is known or in flight; its last output is on its way."""
        return self.num_output_tokens + self.num_pending_tokens >= self.max_tokens

    @property
    def is_finished(self) -> bool:
        return self.status is RequestStatus.FINISHED

    def sort_key(self) -> tuple[int, float]:
        """Order of service: priority first, then arrival."""
        return (self.priority, self.arrival_time)
