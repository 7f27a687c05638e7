"""Drafts for the scheduler's decode rows, each request's backoff, and what verification accepted.

The scheduler asks for a request's drafts when it schedules its decode; the verified step's outcome
comes back through `verified`. A request drafts only when the tokens of the step before are read,
so the engine overlaps steps (async scheduling) only while no request wants to draft: a request in
backoff, or whose tokens repeat nothing, costs nothing. State is the drafter's own, keyed by
request id (the scheduler stays the one writer of request state). A constrained request's drafts are cut before the
first its grammar refuses (the grammar is fed them and rolled back); each verifying row is then
masked where the grammar stands after the drafts before it (structured/grammar.py).
"""

from dataclasses import dataclass, field

import xgrammar as xgr

from shoal.runtime.engine.request import Request
from shoal.runtime.speculative import ngram
from shoal.runtime.speculative.backoff import DraftState, after_step_without_drafts, after_verify
from shoal.runtime.speculative.config import SpeculativeConfig
from shoal.runtime.structured.grammar import feed


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

    def wants_drafts(self, request: Request) -> bool:
        """Whether the request would draft at its next decode (the engine then reads the step in
        flight first: drafts are built from the tokens it brings). A lookup in the tokens known so far
        stands in for the one after: a request whose text repeats nothing lets steps overlap."""
        if not self._eligible(request) or not self._states.get(request.request_id, DraftState()).drafting:
            return False
        config = self.config
        return bool(ngram.propose(request.token_ids, 1, config.prompt_lookup_min, config.prompt_lookup_max))

    def propose(self, request: Request, room: int, num_running: int) -> list[int]:
        """Up to `room` drafts for the request's next decode (room: what its budget and length allow)."""
        limit = self.config.disable_batch_size
        if room < 1 or not self._eligible(request) or (limit is not None and num_running > limit):
            return []
        state = self._states.get(request.request_id, DraftState())
        if not state.drafting:
            self.skipped(request)
            return []
        k = min(room, self.config.num_speculative_tokens)
        drafts = ngram.propose(request.token_ids, k, self.config.prompt_lookup_min, self.config.prompt_lookup_max)
        if drafts and request.grammar is not None:
            drafts = _grammar_prefix(request.grammar, drafts)
        return drafts

    def skipped(self, request: Request) -> None:
        """A decode without drafts (the request in backoff, or its last token still in flight)."""
        state = self._states.get(request.request_id)
        if state is not None:
            self._states[request.request_id] = after_step_without_drafts(state)

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

    @staticmethod
    def _eligible(request: Request) -> bool:
        return request.sampling.speculative


def _grammar_prefix(grammar: xgr.GrammarMatcher, drafts: list[int]) -> list[int]:
    """The drafts up to the first the grammar refuses; the grammar is left as it was."""
    fed = feed(grammar, drafts)
    if fed:
        grammar.rollback(fed)
    return drafts[:fed]
