"""Drafts for the scheduler's decode rows, each request's backoff, and what verification accepted.

The scheduler asks for a request's drafts when it schedules its decode; the verified step's outcome
comes back through `verified`. State is the drafter's own, keyed by request id (the scheduler stays
the one writer of request state). Constrained requests do not draft: their grammar would have to
follow every draft before its mask (not yet done).
"""

from dataclasses import dataclass, field

from shoal.runtime.engine.request import Request
from shoal.runtime.speculative import ngram
from shoal.runtime.speculative.backoff import DraftState, after_step_without_drafts, after_verify
from shoal.runtime.speculative.config import SpeculativeConfig


@dataclass
class DraftCounters:
    """Since start, for the metrics (vLLM's spec_decode_* counters)."""

    num_drafts: int = 0  # rows verified
    num_draft_tokens: int = 0
    num_accepted_tokens: int = 0
    accepted_per_position: list[int] = field(default_factory=list)


class Drafter:
    def __init__(self, config: SpeculativeConfig):
        self.config = config
        self.counters = DraftCounters(accepted_per_position=[0] * config.num_speculative_tokens)
        self._states: dict[str, DraftState] = {}

    def propose(self, request: Request, room: int, num_running: int) -> list[int]:
        """Up to `room` drafts for the request's next decode (room: what its budget and length allow)."""
        limit = self.config.disable_batch_size
        if room < 1 or request.grammar is not None or not request.sampling.speculative:
            return []
        if limit is not None and num_running > limit:
            return []
        state = self._states.get(request.request_id, DraftState())
        if not state.drafting:
            self._states[request.request_id] = after_step_without_drafts(state)
            return []
        k = min(room, self.config.num_speculative_tokens)
        return ngram.propose(request.token_ids, k, self.config.prompt_lookup_min, self.config.prompt_lookup_max)

    def verified(self, request_id: str, proposed: int, accepted: int) -> None:
        counters = self.counters
        counters.num_drafts += 1
        counters.num_draft_tokens += proposed
        counters.num_accepted_tokens += accepted
        for position in range(accepted):
            counters.accepted_per_position[position] += 1
        state = self._states.get(request_id, DraftState())
        self._states[request_id] = after_verify(state, proposed, accepted, self.config.min_acceptance)

    def forget(self, request_id: str) -> None:
        self._states.pop(request_id, None)
