"""The engine: add and abort requests, and step. One step schedules a batch, has the worker run the
model once over it, hands the sampled tokens to the scheduler (which appends them and applies the
token-level stops), detokenizes, and reports what each request produced.

The engine writes no request state itself: the scheduler does (and the block manager, the blocks).
The worker is reached through `StepRunner` and sees only the leaf messages (engine/messages.py).

With async scheduling (on a GPU) a step launches step N+1 before reading step N's draws: the host's
scheduling and input preparation overlap the device's work, and outputs come one step later. A
request that stopped in step N has already been scheduled in N+1; that extra token is dropped.

A step that runs out of GPU memory fails the requests in it (StepOutOfMemoryError, retryable) and
frees their blocks; the engine carries on with the rest.

It owns no thread; `AsyncEngine` drives it from one.
"""

import logging
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import torch
import xgrammar as xgr

from shoal.runtime.engine.drafter import DraftCounters
from shoal.runtime.engine.messages import SampledToken, StepInput
from shoal.runtime.engine.output_processor import OutputProcessor, RequestOutput
from shoal.runtime.engine.request import FinishReason, Request
from shoal.runtime.engine.scheduler import Scheduler, SchedulerOutput
from shoal.runtime.errors import InvalidRequestError, StepOutOfMemoryError
from shoal.runtime.sampling.params import SamplingParams
from shoal.runtime.structured.grammar import StepBitmask, new_matcher

log = logging.getLogger(__name__)


class StepRunner(Protocol):
    """The worker as the engine sees it (worker/model_runner.py is the real one)."""

    def launch(self, step: StepInput) -> Any:
        """Queues the step on the device; returns a handle for `finish`. May raise torch.OutOfMemoryError."""

    def finish(self, launched: Any) -> list[SampledToken | None]:
        """Waits for a launched step's draws: one per row, None where the row samples nothing."""

    def release_cached_memory(self) -> None: ...

    def weight_targets(self) -> dict[str, torch.Tensor]:
        """Each checkpoint tensor name -> the model tensor it is copied into (for weight updates)."""


@dataclass(frozen=True)
class EngineStats:
    num_running: int
    num_waiting: int
    kv_blocks_total: int
    kv_blocks_free: int
    kv_blocks_cached: int
    kv_cache_usage: float
    num_preemptions: int
    prefix_cache_queries: int
    prefix_cache_hits: int
    num_oom_errors: int  # requests failed because their step ran out of GPU memory
    drafts: DraftCounters = field(default_factory=DraftCounters)  # speculative decoding, since start

    @property
    def prefix_cache_hit_rate(self) -> float:
        return self.prefix_cache_hits / self.prefix_cache_queries if self.prefix_cache_queries else 0.0


@dataclass(frozen=True)
class StepResult:
    outputs: list[RequestOutput]
    num_batched_tokens: int
    duration_s: float
    # Requests this step ended with an error instead of an output (already finished, blocks freed).
    failed: dict[str, Exception] = field(default_factory=dict)
    mask_s: float | None = None  # filling the constrained rows' allowed-token masks; None: none had one


@dataclass(frozen=True)
class StepOverlap:
    """How steps overlap. With `async_scheduling` a step is launched before the step before is read.
    With `pipeline_stages` > 1 (a pipeline-parallel runner) a micro-batch per stage is in flight:
    steps that take disjoint requests, each an even share of those not in flight, so that while stage
    0 runs the newest the later stages run the ones before it (a request in the pipeline waits for its
    token before its next step)."""

    async_scheduling: bool = False
    pipeline_stages: int = 1

    @property
    def micro_batches(self) -> bool:
        return self.async_scheduling and self.pipeline_stages > 1

    @property
    def steps_in_flight(self) -> int:
        """How many launched steps stay unread when `step` returns."""
        if not self.async_scheduling:
            return 0
        return self.pipeline_stages if self.micro_batches else 1


class LLMEngine:
    def __init__(
        self,
        runner: StepRunner,
        scheduler: Scheduler,
        output_processor: OutputProcessor,
        max_model_len: int,
        vocab_size: int,
        overlap: StepOverlap = StepOverlap(),
    ):
        self.runner = runner
        self.scheduler = scheduler
        self.output_processor = output_processor
        self.max_model_len = max_model_len
        self.vocab_size = vocab_size
        self.overlap = overlap
        self._in_flight: deque[tuple[SchedulerOutput, Any]] = deque()  # launched, unread; oldest first
        self._read_early: list[RequestOutput] = []  # the step before's outputs, read during this launch
        self.num_oom_errors = 0

    def make_request(
        self,
        request_id: str,
        prompt_token_ids: list[int],
        sampling: SamplingParams,
        priority: int = 0,
        arrival_time: float | None = None,
        grammar: xgr.CompiledGrammar | None = None,
    ) -> Request:
        """Checks a request against this model; raises InvalidRequestError. Touches no engine state,
        so any thread may call it. A constrained request (sampling.structured) brings its grammar,
        compiled for this model (runtime/structured/compiler.py)."""
        max_tokens = self._check_lengths(prompt_token_ids, sampling)
        if sampling.stop and self.output_processor.tokenizer is None:
            raise InvalidRequestError("sampling.stop", "stop strings need a tokenizer; this model has none")
        if (sampling.structured is None) != (grammar is None):
            raise ValueError("a grammar comes with sampling.structured, and only with it")
        return Request(
            request_id=request_id,
            prompt_token_ids=list(prompt_token_ids),
            sampling=sampling,
            max_tokens=max_tokens,
            priority=priority,
            arrival_time=time.monotonic() if arrival_time is None else arrival_time,
            grammar=new_matcher(grammar) if grammar is not None else None,
        )

    def add(self, request: Request) -> None:
        if self.scheduler.get(request.request_id) is not None:
            raise InvalidRequestError("request_id", f"{request.request_id!r} is already in use")
        self.scheduler.add(request)
        self.output_processor.add(request)

    def add_request(
        self,
        request_id: str,
        prompt_token_ids: list[int],
        sampling: SamplingParams,
        priority: int = 0,
        grammar: xgr.CompiledGrammar | None = None,
    ) -> Request:
        request = self.make_request(request_id, prompt_token_ids, sampling, priority, grammar=grammar)
        self.add(request)
        return request

    def abort_request(self, request_id: str, reason: str | None = None) -> RequestOutput | None:
        """Ends the request and frees its KV blocks now; None if it is not (or no longer) here."""
        request = self.scheduler.get(request_id)
        if request is None:
            return None
        self.scheduler.finish(request, FinishReason.ABORT, reason)
        return self.output_processor.output(request, [])

    def abort_all(self, reason: str) -> list[RequestOutput]:
        """Ends every request (after reading the step in flight, whose tokens are theirs)."""
        outputs = self.finish_in_flight()
        for request_id in self.scheduler.unfinished_ids():
            outputs.append(self.abort_request(request_id, reason))
        return outputs

    def has_unfinished(self) -> bool:
        return self.scheduler.has_unfinished() or bool(self._in_flight)

    def reset_prefix_cache(self) -> int:
        """Forgets every cached prefix; returns how many blocks were forgotten."""
        return self.scheduler.block_manager.reset_prefix_cache()

    def step(self) -> StepResult:
        started = time.perf_counter()
        outputs = []
        if self._in_flight and not self._can_overlap():
            outputs += self.finish_in_flight()
        scheduled = self._schedule()
        launched, bitmask = None, self._bitmask(scheduled)
        failed = {}
        if not scheduled.is_empty:
            step = scheduled.step if bitmask is None else replace(scheduled.step, token_bitmask=bitmask)
            launched = self._launch(scheduled, step)
            outputs += self._read_early
            self._read_early = []
            if launched is None:
                # The step before is good: read its draws first, as one may finish a request this step held.
                outputs += self.finish_in_flight()
                failed = self._fail_out_of_memory(scheduled)
            else:
                self.scheduler.advance(scheduled)
        if launched is None:  # nothing new in flight: read the oldest step, whose requests may go on
            outputs += self._finish_oldest()
        else:
            while len(self._in_flight) >= max(1, self.overlap.steps_in_flight):
                outputs += self._finish_oldest()
            self._in_flight.append((scheduled, launched))
        if not self.overlap.steps_in_flight:
            outputs += self.finish_in_flight()
        mask_s = bitmask.fill_s if bitmask is not None else None
        return StepResult(outputs, scheduled.num_batched_tokens, time.perf_counter() - started, failed, mask_s)

    def _launch(self, scheduled: SchedulerOutput, step: StepInput) -> Any:
        """The runner's handle, or None if the step ran out of GPU memory."""
        try:
            return self.runner.launch(step)
        except torch.OutOfMemoryError as error:
            log.warning(
                "a step of %d requests (%d tokens) ran out of GPU memory; failing them: %s",
                len(scheduled.scheduled),
                scheduled.num_batched_tokens,
                error,
            )
        # Only now, out of the except block whose traceback held the step's tensors, are they free.
        self.runner.release_cached_memory()
        return None

    def _fail_out_of_memory(self, scheduled: SchedulerOutput) -> dict[str, Exception]:
        failed = {}
        for item in scheduled.scheduled:
            request = item.request
            if request.is_finished:
                continue  # its draw from the step before ended it
            self.scheduler.fail(request)
            self.output_processor.remove(request.request_id)
            failed[request.request_id] = StepOutOfMemoryError()
        self.num_oom_errors += len(failed)
        return failed

    def _schedule(self) -> SchedulerOutput:
        if not self.overlap.micro_batches:
            return self.scheduler.schedule()
        in_flight = frozenset(
            item.request.request_id for scheduled, _ in self._in_flight for item in scheduled.scheduled
        )
        # The requests not in the pipeline, shared evenly over the stages it has free.
        free = self.scheduler.num_running + self.scheduler.num_waiting - len(in_flight)
        stages_free = max(1, self.overlap.pipeline_stages - len(self._in_flight))
        return self.scheduler.schedule(in_flight, max_rows=max(1, -(-free // stages_free)))

    def _can_overlap(self) -> bool:
        """Penalties count a request's output tokens on the host, and drafts are looked up in them, so
        both need last step's draws read. (A grammar's mask needs them too, but only once this step's
        forward pass is queued: see `_read_step_before`.) Micro-batches leave out the requests in
        flight, so nothing they run waits on its draws."""
        if self.overlap.micro_batches:
            return True
        drafter = self.scheduler.drafter
        return not any(
            r.sampling.needs_penalties or (drafter is not None and drafter.wants_drafts(r))
            for r in self.scheduler.running
        )

    def _bitmask(self, scheduled: SchedulerOutput) -> StepBitmask | None:
        """The allowed-token masks of the step's sampling rows, if any of them is constrained; a row
        with drafts has a sampling row per draft, plus one, each masked after the drafts before it."""
        matchers, drafts_before = [], []
        for item in scheduled.scheduled:
            if item.completes_prompt:
                drafts = item.draft_token_ids
                matchers += [item.request.grammar] * (1 + len(drafts))
                drafts_before += [drafts[:j] for j in range(1 + len(drafts))]
        if all(m is None for m in matchers):
            return None
        return StepBitmask(matchers, self.vocab_size, self._read_step_before, drafts_before)

    def _read_step_before(self) -> None:
        """Under async scheduling, this step was launched with the step before still in flight; its
        masks follow the tokens that step draws. The worker calls this once it has queued this step's
        forward pass: the step before's draws are read (the scheduler feeds them to the grammars) while
        the device runs this one. A pipeline's micro-batch holds none of the requests in flight, so it
        reads nothing: reading would drain the pipeline at every constrained step."""
        if not self.overlap.micro_batches:
            self._read_early += self.finish_in_flight()

    def finish_in_flight(self) -> list[RequestOutput]:
        """Waits for every launched step's draws, oldest first. After it the device is idle and the
        requests' state whole: the engine may pause, or its weights change."""
        outputs = []
        while self._in_flight:
            outputs += self._finish_oldest()
        return outputs

    def _finish_oldest(self) -> list[RequestOutput]:
        """Waits for the oldest launched step's draws, if any; the scheduler appends them and applies
        the token-level stops, the output processor detokenizes and finds stop strings, which the
        scheduler applies."""
        if not self._in_flight:
            return []
        scheduled, launched = self._in_flight.popleft()
        outputs = []
        for request, tokens in self.scheduler.update(scheduled, self.runner.finish(launched)):
            for count, token in enumerate(tokens, start=1):
                stop = self.output_processor.add_token(request, token.token_id, count == len(tokens))
                if stop is not None:  # drafts accepted after it are dropped
                    self.scheduler.finish_at_stop_string(request, stop, len(tokens) - count)
                    tokens = tokens[:count]
                    break
            outputs.append(self.output_processor.output(request, tokens))
        return outputs

    def stats(self) -> EngineStats:
        blocks = self.scheduler.block_manager
        return EngineStats(
            num_running=self.scheduler.num_running,
            num_waiting=self.scheduler.num_waiting,
            kv_blocks_total=blocks.num_blocks,
            kv_blocks_free=blocks.num_free_blocks,
            kv_blocks_cached=blocks.num_cached_blocks,
            kv_cache_usage=blocks.usage,
            num_preemptions=self.scheduler.num_preemptions,
            prefix_cache_queries=blocks.prefix_cache_queries,
            prefix_cache_hits=blocks.prefix_cache_hits,
            num_oom_errors=self.num_oom_errors,
            drafts=replace(drafter.counters, accepted_per_position=list(drafter.counters.accepted_per_position))
            if (drafter := self.scheduler.drafter) is not None
            else DraftCounters(),
        )

    def _check_lengths(self, prompt_token_ids: list[int], sampling: SamplingParams) -> int:
        """Returns the request's effective max_tokens."""
        if not prompt_token_ids:
            raise InvalidRequestError("prompt", "must not be empty")
        bad = next((t for t in prompt_token_ids if not 0 <= t < self.vocab_size), None)
        if bad is not None:
            raise InvalidRequestError(
                "prompt.token_ids", f"token id {bad} is outside the vocabulary [0, {self.vocab_size})"
            )
        bad = next((t for t in sampling.stop_token_ids if t >= self.vocab_size), None)
        if bad is not None:
            raise InvalidRequestError("sampling.stop_token_ids", f"token id {bad} is outside the vocabulary")
        prompt_len = len(prompt_token_ids)
        if prompt_len >= self.max_model_len:
            raise InvalidRequestError(
                "prompt",
                f"the prompt has {prompt_len} tokens; this model's context window is {self.max_model_len} "
                "tokens, and at least one must be left to generate",
            )
        room = self.max_model_len - prompt_len
        if sampling.max_tokens is None:
            return room
        if sampling.max_tokens > room:
            raise InvalidRequestError(
                "sampling.max_tokens",
                f"this model's context window is {self.max_model_len} tokens; the prompt has {prompt_len} "
                f"and max_tokens asks for {sampling.max_tokens} more (at most {room})",
            )
        return sampling.max_tokens
