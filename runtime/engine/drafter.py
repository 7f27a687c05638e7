"""Drafts for the scheduler's decode rows, each request's backoff, and what verification accepted.

Drafting takes two calls per step: `plan` when the scheduler schedules a request's decode (how many
drafts it may carry: the scheduler allocates KV slots for them), and `fill` once the step's rows are
settled (the drafts themselves). Prompt lookup finds its drafts in `plan`; a draft model proposes
them in `fill`, for every planned request in one batch, over the slots just allocated (the worker's
draft_runner.py). The verified step's outcome comes back through `verified`.

A request drafts only when the tokens of the step before are read, so the engine overlaps steps
(async scheduling) only while no request wants to draft: a request in backoff, or (prompt lookup)
whose tokens repeat nothing, costs nothing. State is the drafter's own, keyed by request id (the
scheduler stays the one writer of request state). A constrained request's drafts are cut before the
first its grammar refuses (the grammar is fed them and rolled back); each verifying row is then
masked where the grammar stands after the drafts before it (structured/grammar.py).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import xgrammar as xgr

from shoal.runtime.engine.messages import DraftQuery
from shoal.runtime.engine.request import Request
from shoal.runtime.speculative import ngram
from shoal.runtime.speculative.backoff import ENGINE_SMOOTHING, DraftState, after_step_without_drafts, after_verify
from shoal.runtime.speculative.config import NGRAM, SpeculativeConfig
from shoal.runtime.structured.grammar import feed


@dataclass
class DraftCounters:
    """Since start, for the metrics (vLLM's spec_decode_* counters)."""

    num_drafts: int = 0  # rows verified
    num_draft_tokens: int = 0
    num_accepted_tokens: int = 0
    accepted_per_position: list[int] = field(default_factory=list)


class DraftProposer(Protocol):
    """A draft model on the worker (worker/draft_runner.py is the real one)."""

    def propose(self, queries: list[DraftQuery], finished_request_ids: list[str]) -> list[list[int]]:
        """Each query's drafts (exactly num_drafts); first drops what it keeps for ended requests."""


class Drafter:
    def __init__(self, config: SpeculativeConfig, proposer: DraftProposer | None = None):
        if (config.method == NGRAM) == (proposer is not None):
            raise ValueError("a draft model proposer comes with the draft_model method, and only with it")
        self.config = config
        self.proposer = proposer
        self.counters = DraftCounters(accepted_per_position=[0] * config.num_speculative_tokens)
        self._states: dict[str, DraftState] = {}
        # Over every request: where a new one starts. Unproven at first, so the first failure pauses it.
        self._engine_state = DraftState(acceptance=config.min_acceptance)
        self._looked_up: dict[str, list[int]] = {}  # prompt lookup: this step's drafts, found in `plan`
        self._ended: list[str] = []  # requests forgotten since the proposer last heard

    def wants_drafts(self, request: Request) -> bool:
        """Whether the request would draft at its next decode (the engine then reads the step in
        flight first: drafts are built from the tokens it brings). For prompt lookup, a lookup in the
        tokens known so far stands in for the one after: a request whose text repeats nothing lets
        steps overlap."""
        if not self._eligible(request) or not self._state(request.request_id).drafting:
            return False
        return self.proposer is not None or bool(self._lookup(request, 1))

    def plan(self, request: Request, room: int, num_running: int) -> int:
        """How many drafts the request's next decode carries, at most `room` (what its budget and
        length allow): the scheduler allocates their slots, and `fill` gives them (maybe fewer)."""
        limit = self.config.disable_batch_size
        if room < 1 or not self._eligible(request) or (limit is not None and num_running > limit):
            return 0
        if not self._state(request.request_id).drafting:
            self.skipped(request)
            return 0
        k = min(room, self.config.num_speculative_tokens)
        if self.proposer is not None:
            return k
        drafts = self._lookup(request, k)
        if drafts:
            self._looked_up[request.request_id] = drafts
        return len(drafts)

    def fill(self, planned: list[tuple[Request, int]], block_ids: Callable[[str], list[int]]) -> list[list[int]]:
        """The drafts of each (request, drafts planned), in order; a constrained request's stop before
        the first its grammar refuses. `block_ids` gives a request's block table (a draft model writes
        into it). Called every step, planned or not: a step without drafts counts down the engine's
        pause too, so short requests that never outlive a pause of their own still try again."""
        if not planned:
            self._engine_state = after_step_without_drafts(self._engine_state)
        if self.proposer is not None:
            queries = [DraftQuery(r.request_id, r.token_ids, block_ids(r.request_id), n) for r, n in planned]
            drafted = self.proposer.propose(queries, self._ended) if queries or self._ended else []
            self._ended = []
        else:
            drafted = [self._looked_up.pop(r.request_id) for r, _ in planned]
            self._looked_up.clear()  # planned for a request the same step then preempted
        return [
            _grammar_prefix(r.grammar, drafts) if drafts and r.grammar is not None else drafts
            for (r, _), drafts in zip(planned, drafted, strict=True)
        ]

    def skipped(self, request: Request) -> None:
        """A decode without drafts (the request in backoff, or its last token still in flight)."""
        state = self._state(request.request_id)
        if not state.drafting:
            self._states[request.request_id] = after_step_without_drafts(state)

    def verified(self, request_id: str, proposed: int, accepted: int) -> None:
        counters = self.counters
        counters.num_drafts += 1
        counters.num_draft_tokens += proposed
        counters.num_accepted_tokens += accepted
        for position in range(accepted):
            counters.accepted_per_position[position] += 1
        minimum = self.config.min_acceptance
        self._states[request_id] = after_verify(self._state(request_id), proposed, accepted, minimum)
        self._engine_state = after_verify(self._engine_state, proposed, accepted, minimum, ENGINE_SMOOTHING)

    def forget(self, request_id: str) -> None:
        self._states.pop(request_id, None)
        if self.proposer is not None:
            self._ended.append(request_id)

    def _state(self, request_id: str) -> DraftState:
        return self._states.get(request_id, self._engine_state)

    def _lookup(self, request: Request, k: int) -> list[int]:
        config = self.config
        return ngram.propose(request.token_ids, k, config.prompt_lookup_min, config.prompt_lookup_max)

    @staticmethod
    def _eligible(request: Request) -> bool:
        return request.sampling.speculative


def _grammar_prefix(grammar: xgr.GrammarMatcher, drafts: list[int]) -> list[int]:
    """The drafts up to the first the grammar refuses; the grammar is left as it was."""
    fed = feed(grammar, drafts)
    if fed:
        grammar.rollback(fed)
    return drafts[:fed]
