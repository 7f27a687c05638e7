"""Who runs this step, and with how many tokens.

A step has a token budget (`max_num_batched_tokens`). Running requests come first: decodes (one
token each), then prompts still being prefilled in chunks (as many tokens as the budget leaves).
Then waiting requests are admitted mid-flight, best priority first, while blocks, budget and the
`max_num_seqs` cap allow. When the KV pool runs dry, the lowest-priority, latest request is
preempted: its blocks are freed and it is queued again, to be recomputed later (prefix caching makes
that cheap). A waiting request may also preempt running ones of strictly lower priority, so that
realtime traffic is not stuck behind batch work.
"""

import heapq
import itertools
from dataclasses import dataclass, field

from shoal.runtime.engine.block_manager import BlockManager
from shoal.runtime.engine.request import FinishReason, Request, RequestStatus


@dataclass(frozen=True)
class SchedulerConfig:
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192

    def __post_init__(self) -> None:
        if self.max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {self.max_num_seqs}")
        if self.max_num_batched_tokens < 1:
            raise ValueError(f"max_num_batched_tokens must be >= 1, got {self.max_num_batched_tokens}")


@dataclass
class ScheduledRequest:
    request: Request
    num_new_tokens: int

    @property
    def completes_prompt(self) -> bool:
        """After this step every token is computed, so the step samples the next token."""
        return self.num_new_tokens == self.request.num_uncomputed_tokens


@dataclass
class SchedulerOutput:
    scheduled: list[ScheduledRequest]  # single-token (decode) entries first
    preempted: list[Request] = field(default_factory=list)

    @property
    def num_batched_tokens(self) -> int:
        return sum(s.num_new_tokens for s in self.scheduled)

    @property
    def is_empty(self) -> bool:
        return not self.scheduled


class Scheduler:
    def __init__(self, config: SchedulerConfig, block_manager: BlockManager):
        self.config = config
        self.block_manager = block_manager
        self.running: list[Request] = []
        self._waiting: list[tuple[int, float, int, Request]] = []  # heap; finished entries are skipped
        self._order = itertools.count()
        self._unfinished: dict[str, Request] = {}
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

    def add(self, request: Request) -> None:
        if request.request_id in self._unfinished:
            raise ValueError(f"request id {request.request_id!r} is already in use")
        self._unfinished[request.request_id] = request
        self._push_waiting(request)

    def finish(self, request: Request, reason: FinishReason) -> None:
        """End a request (done, or aborted while waiting or running) and free its blocks now."""
        if request.is_finished:
            return
        if request.status is RequestStatus.RUNNING:
            self.running.remove(request)
        self.block_manager.free(request)
        request.status = RequestStatus.FINISHED
        request.finish_reason = reason
        del self._unfinished[request.request_id]

    def fail(self, request: Request) -> None:
        """End a request whose step failed before writing its K/V, and free its blocks now."""
        self.block_manager.uncache_uncomputed(request)
        self.finish(request, FinishReason.ABORT)

    def schedule(self) -> SchedulerOutput:
        budget = self.config.max_num_batched_tokens
        scheduled: dict[str, ScheduledRequest] = {}
        preempted: list[Request] = []

        def preempt(victim: Request) -> None:
            nonlocal budget
            refund = scheduled.pop(victim.request_id, None)
            if refund is not None:
                budget += refund.num_new_tokens
            self._preempt(victim)
            preempted.append(victim)

        # Running requests: decodes first, then chunked prefills, each in order of service.
        for request in sorted(self.running, key=lambda r: (r.num_uncomputed_tokens > 1, r.sort_key())):
            if budget == 0:
                break
            if request.status is not RequestStatus.RUNNING or request.is_generation_done:
                continue  # preempted earlier in this loop, or only its last token is still in flight
            num_new = min(request.num_uncomputed_tokens, budget)
            while not self.block_manager.allocate(request, num_new):
                victim = max(self.running, key=Request.sort_key)
                preempt(victim)
                if victim is request:
                    break
            else:
                scheduled[request.request_id] = ScheduledRequest(request, num_new)
                budget -= num_new

        # Waiting requests, admitted mid-flight.
        while budget > 0 and (request := self._peek_waiting()) is not None:
            if request in preempted or request.num_pending_tokens:
                break  # never re-admit in the step that preempted it, nor before its last draw is read
            hits = self.block_manager.find_cached_prefix(request)
            num_hit_tokens = len(hits) * self.block_manager.block_size
            num_new = min(request.num_uncomputed_tokens - num_hit_tokens, budget)
            room = len(self.running) < self.config.max_num_seqs
            if room and self.block_manager.allocate(request, num_new, hits):
                heapq.heappop(self._waiting)
                self._admit(request, num_hit_tokens)
                scheduled[request.request_id] = ScheduledRequest(request, num_new)
                budget -= num_new
                continue
            victim = max(self.running, key=Request.sort_key, default=None)
            if victim is None or victim.priority <= request.priority:
                break
            preempt(victim)

        ordered = sorted(scheduled.values(), key=lambda s: s.num_new_tokens > 1)
        return SchedulerOutput(scheduled=ordered, preempted=preempted)

    def _admit(self, request: Request, num_hit_tokens: int) -> None:
        if request.num_preemptions == 0:
            request.num_cached_tokens = num_hit_tokens
        request.num_computed_tokens = num_hit_tokens
        request.status = RequestStatus.RUNNING
        self.running.append(request)

    def _preempt(self, request: Request) -> None:
        self.running.remove(request)
        self.block_manager.free(request)
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
