"""Who runs this step, and with how many tokens.

A step has a token budget (`max_num_batched_tokens`). Running requests come first: decodes (one
token each), then prompts still being prefilled in chunks (as many tokens as the budget leaves).
Then waiting requests are admitted mid-flight, best priority first, while blocks, budget and the
`max_num_seqs` cap allow. A running prefill of lower priority than the best waiting request yields
the budget to it and takes what admission leaves, so a realtime request arriving while a long batch
prompt is prefilled in chunks is scheduled in the next step. When the KV pool runs dry, the
lowest-priority, latest request is preempted: its blocks are freed and it is queued again, to be
recomputed later (prefix caching makes that cheap). A waiting request may also preempt running
ones of strictly lower priority, so that realtime traffic is not stuck behind batch work.

With speculative decoding (a drafter), a decode may carry draft tokens: the row runs its last token
and the drafts in one pass, and `update` appends the drafts the step accepted plus one token, and
steps the computed count back over the rejected ones (their K/V slots are written again later).

It is also the one writer of request state. `advance` records a launched step (tokens being
computed, draws on their way); `update` appends a step's sampled tokens and ends the requests they
stop; `finish` ends one for any other reason (a stop string the output processor found, an abort,
a failed step) and frees its blocks. The block manager, its own state keyed by request id, is the
only other writer.
"""

import heapq
import itertools
import logging
from dataclasses import dataclass, field

from shoal.runtime.engine.block_manager import BlockManager
from shoal.runtime.engine.drafter import Drafter
from shoal.runtime.engine.messages import RowInput, SampledToken, StepInput
from shoal.runtime.engine.request import FinishReason, Request, RequestStatus
from shoal.runtime.engine.stop_conditions import StopLimits, token_stop

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SchedulerConfig:
    """Read from the EngineConfig (runtime/config.py), which holds the defaults."""

    max_num_seqs: int
    max_num_batched_tokens: int

    def __post_init__(self) -> None:
        if self.max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {self.max_num_seqs}")
        if self.max_num_batched_tokens < 1:
            raise ValueError(f"max_num_batched_tokens must be >= 1, got {self.max_num_batched_tokens}")


@dataclass(slots=True)
class ScheduledRequest:
    request: Request
    num_new_tokens: int
    # After this step every token is computed, so the step samples the next token.
    completes_prompt: bool
    num_drafts_planned: int = 0  # slots allocated for drafts; the drafts, maybe fewer, come after
    draft_token_ids: list[int] = field(default_factory=list)  # run after the last token, to verify


@dataclass
class SchedulerOutput:
    scheduled: list[ScheduledRequest]  # single-token (decode) entries first
    preempted: list[Request] = field(default_factory=list)
    # What the worker reads: the same rows, in the same order, as plain data.
    step: StepInput = field(default_factory=lambda: StepInput([], []))

    @property
    def num_batched_tokens(self) -> int:
        return sum(s.num_new_tokens for s in self.scheduled)

    @property
    def is_empty(self) -> bool:
        return not self.scheduled


class Scheduler:
    def __init__(
        self,
        config: SchedulerConfig,
        block_manager: BlockManager,
        stop_limits: StopLimits | None = None,
        drafter: Drafter | None = None,
    ):
        self.config = config
        self.drafter = drafter
        self.block_manager = block_manager
        self.stop_limits = stop_limits or StopLimits()
        self.running: list[Request] = []
        self._waiting: list[tuple[int, float, int, Request]] = []  # heap; finished entries are skipped
        self._order = itertools.count()
        self._unfinished: dict[str, Request] = {}
        self._finished_ids: list[str] = []  # ended since the last step the worker was sent
        self.num_preemptions = 0

    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_waiting(self) -> int:
        return len(self._unfinished) - len(self.running)

    def has_unfinished(self) -> bool:
        return bool(self._unfinished)

    def get(self, request_id: str) -> Request | None:
        return self._unfinished.get(request_id)

    def unfinished_ids(self) -> list[str]:
        return list(self._unfinished)

    def add(self, request: Request) -> None:
        if request.request_id in self._unfinished:
            raise ValueError(f"request id {request.request_id!r} is already in use")
        self._unfinished[request.request_id] = request
        self._push_waiting(request)

    def finish(self, request: Request, reason: FinishReason, stop_reason: str | int | None = None) -> None:
        """End a request (done, or aborted while waiting or running) and free its blocks now."""
        if request.is_finished:
            return
        if request.status is RequestStatus.RUNNING:
            self.running.remove(request)
        self.block_manager.free(request.request_id)
        if self.drafter is not None:
            self.drafter.forget(request.request_id)
        request.status = RequestStatus.FINISHED
        request.finish_reason = reason
        request.stop_reason = stop_reason
        del self._unfinished[request.request_id]
        self._finished_ids.append(request.request_id)

    def finish_at_stop_string(self, request: Request, stop: str, num_tokens_after: int = 0) -> None:
        """The text of a token just appended completed a stop string; `num_tokens_after` tokens of the
        same step (accepted drafts) came after it, and are dropped. A stop string ranks above the
        lengths, so it also replaces a LENGTH end that same token brought."""
        if num_tokens_after:
            del request.token_ids[-num_tokens_after:]
        if request.is_finished:  # by a length, at this same token (a later draw is never appended)
            request.finish_reason, request.stop_reason = FinishReason.STOP, stop
        else:
            self.finish(request, FinishReason.STOP, stop)

    def fail(self, request: Request) -> None:
        """End a request whose step failed before writing its K/V, and free its blocks now."""
        self.block_manager.uncache_uncomputed(request)
        self.finish(request, FinishReason.ABORT)

    def schedule(self, in_flight: frozenset[str] = frozenset(), max_rows: int | None = None) -> SchedulerOutput:
        """`in_flight` and `max_rows` serve a pipeline's micro-batches: requests whose step is still
        in the pipeline are left out (their next token is not drawn yet), and a step takes at most
        `max_rows` requests, so that the requests split evenly between the micro-batches in flight."""
        budget = self.config.max_num_batched_tokens
        scheduled: dict[str, ScheduledRequest] = {}
        preempted: list[Request] = []
        max_rows = max_rows or self.config.max_num_seqs

        def preempt(victim: Request) -> None:
            nonlocal budget
            refund = scheduled.pop(victim.request_id, None)
            if refund is not None:
                budget += refund.num_new_tokens
            self._preempt(victim)
            preempted.append(victim)

        def schedule_running(request: Request) -> None:
            nonlocal budget
            if budget == 0 or request.status is not RequestStatus.RUNNING or request.is_generation_done:
                return  # preempted earlier in this step, or only its last token is still in flight
            if request.request_id in in_flight or len(scheduled) >= max_rows:
                return
            uncomputed = request.num_uncomputed_tokens
            num_new = min(uncomputed, budget)
            num_drafts = self._num_drafts(request, budget) if uncomputed == 1 else 0
            if num_drafts and self.block_manager.allocate(request, num_new + num_drafts):
                scheduled[request.request_id] = ScheduledRequest(request, num_new + num_drafts, True, num_drafts)
                budget -= num_new + num_drafts
                return
            while not self.block_manager.allocate(request, num_new):
                victim = max(self.running, key=Request.sort_key)
                preempt(victim)
                if victim is request:
                    return
            scheduled[request.request_id] = ScheduledRequest(request, num_new, num_new == uncomputed)
            budget -= num_new

        # Running requests: decodes first, then chunked prefills, each in order of service. A prefill
        # of lower priority than the best waiting request yields: it gets what admission leaves, or a
        # long batch prompt would hold the whole budget, step after step, ahead of a realtime one.
        best_waiting = self._peek_waiting()
        decodes, leading, yielding = [], [], []
        for request in sorted(self.running, key=Request.sort_key):
            if request.num_uncomputed_tokens <= 1:
                decodes.append(request)
            elif best_waiting is not None and request.priority > best_waiting.priority:
                yielding.append(request)
            else:
                leading.append(request)
        for request in decodes + leading:
            schedule_running(request)

        # Waiting requests, admitted mid-flight.
        while budget > 0 and len(scheduled) < max_rows and (request := self._peek_waiting()) is not None:
            if request in preempted or request.num_pending_tokens:
                break  # never re-admit in the step that preempted it, nor before its last draw is read
            hits = self.block_manager.find_cached_prefix(request)
            num_hit_tokens = len(hits) * self.block_manager.block_size
            uncomputed = request.num_uncomputed_tokens - num_hit_tokens
            num_new = min(uncomputed, budget)
            room = len(self.running) < self.config.max_num_seqs
            if room and self.block_manager.allocate(request, num_new, hits):
                heapq.heappop(self._waiting)
                self._admit(request, num_hit_tokens)
                scheduled[request.request_id] = ScheduledRequest(request, num_new, num_new == uncomputed)
                budget -= num_new
                continue
            victim = max(self.running, key=Request.sort_key, default=None)
            if victim is None or victim.priority <= request.priority:
                break
            preempt(victim)

        for request in yielding:
            schedule_running(request)

        self._fill_drafts(list(scheduled.values()))
        # Decodes first, those with drafts among them (the worker runs a row with drafts as decodes).
        ordered = sorted(scheduled.values(), key=lambda s: s.num_new_tokens - len(s.draft_token_ids) > 1)
        finished_ids = []
        if ordered:  # an empty step goes nowhere: the ids wait for the next one
            finished_ids, self._finished_ids = self._finished_ids, []
        step = StepInput([self._row_input(s) for s in ordered], finished_ids)
        return SchedulerOutput(scheduled=ordered, preempted=preempted, step=step)

    def advance(self, output: SchedulerOutput) -> None:
        """The step was launched: its tokens are being computed, and each sampling row's draw is on
        its way (read by `update`, maybe a step later)."""
        for item in output.scheduled:
            if item.completes_prompt:
                item.request.num_pending_tokens += 1
            item.request.num_computed_tokens += item.num_new_tokens

    def update(self, output: SchedulerOutput, tokens: list[SampledToken | None]) -> list[tuple[Request, SampledToken]]:
        """Appends the step's draws (one per scheduled row, None where the row sampled nothing) and
        feeds each constrained request's grammar, and ends the requests a stop token, EOS, a completed
        grammar, max_tokens or the context window stops, freeing their
        blocks. Returns the (request, token) pairs appended; a draw for a request that ended while it
        was in flight is dropped."""
        appended = []
        for item, token in zip(output.scheduled, tokens, strict=True):
            if token is None:
                continue
            request = item.request
            request.num_pending_tokens -= 1
            if request.is_finished:
                continue  # aborted, or stopped, while this draw was in flight
            drawn = [token]
            if item.draft_token_ids:
                accepted = token.accepted or []
                request.num_computed_tokens -= len(item.draft_token_ids) - len(accepted)  # rejected drafts
                self.drafter.verified(request.request_id, len(item.draft_token_ids), len(accepted))
                drawn = [*accepted, token]
            appended.append((request, self._append(request, drawn)))
        return appended

    def _append(self, request: Request, drawn: list[SampledToken]) -> list[SampledToken]:
        """Appends the draws in order until one ends the request; returns those appended."""
        for count, token in enumerate(drawn, start=1):
            request.token_ids.append(token.token_id)
            if request.grammar is not None and not request.grammar.accept_token(token.token_id):
                # The mask allowed only what the grammar accepts: a token it refuses is a bug, not output.
                log.error("request %s: token %d breaks its grammar; ending it", request.request_id, token.token_id)
                self.finish(request, FinishReason.ABORT)
            elif (stop := token_stop(request, token.token_id, self.stop_limits)) is not None:
                self.finish(request, *stop)
            if request.is_finished:
                return drawn[:count]
        return drawn

    def _num_drafts(self, request: Request, budget: int) -> int:
        """Drafts planned for a decode: as many as the budget and the request's max_tokens leave room for."""
        if self.drafter is None:
            return 0
        if request.num_pending_tokens:
            self.drafter.skipped(request)
            return 0
        room = min(budget - 1, request.max_tokens - request.num_output_tokens - 1)
        return self.drafter.plan(request, room, len(self.running))

    def _fill_drafts(self, scheduled: list[ScheduledRequest]) -> None:
        """The planned rows get their drafts (the slots of any they lack stay allocated, for later tokens)."""
        if self.drafter is None:
            return
        planned = [s for s in scheduled if s.num_drafts_planned]
        drafted = self.drafter.fill([(s.request, s.num_drafts_planned) for s in planned], self.block_manager.block_ids)
        for item, drafts in zip(planned, drafted, strict=True):
            item.draft_token_ids = drafts
            item.num_new_tokens -= item.num_drafts_planned - len(drafts)

    def _admit(self, request: Request, num_hit_tokens: int) -> None:
        if request.num_preemptions == 0:
            request.num_cached_tokens = num_hit_tokens
        request.num_computed_tokens = num_hit_tokens
        request.status = RequestStatus.RUNNING
        self.running.append(request)

    def _row_input(self, item: ScheduledRequest) -> RowInput:
        """Built once per row per step: positional arguments, and the history only for penalties."""
        request, start, num_new = item.request, item.request.num_computed_tokens, item.num_new_tokens
        row_id, drafts = request.request_id, item.draft_token_ids
        token_ids = request.token_ids[start : start + num_new - len(drafts)] + drafts
        block_ids = list(self.block_manager.block_ids(row_id))
        if not item.completes_prompt:
            return RowInput(row_id, start, num_new, token_ids, block_ids, None)
        sampling = request.sampling
        if not sampling.needs_penalties:
            return RowInput(row_id, start, num_new, token_ids, block_ids, sampling, num_drafts=len(drafts))
        prompt, output = request.prompt_token_ids, request.output_token_ids
        return RowInput(row_id, start, num_new, token_ids, block_ids, sampling, prompt, output, len(drafts))

    def _preempt(self, request: Request) -> None:
        self.running.remove(request)
        self.block_manager.free(request.request_id, keep_hashes=True)
        if self.drafter is not None:  # a draft model's cache of it lived in those blocks
            self.drafter.forget(request.request_id)
        request.num_computed_tokens = 0
        request.status = RequestStatus.WAITING
        request.num_preemptions += 1
        self.num_preemptions += 1
        self._push_waiting(request)

    def _push_waiting(self, request: Request) -> None:
        heapq.heappush(self._waiting, (request.priority, request.arrival_time, next(self._order), request))

    def _peek_waiting(self) -> Request | None:
        """The best waiting request, dropping heap entries of requests finished while waiting."""
        while self._waiting and self._waiting[0][3].status is not RequestStatus.WAITING:
            heapq.heappop(self._waiting)
        return self._waiting[0][3] if self._waiting else None
