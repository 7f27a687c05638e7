"""Runs the engine's step loop in its own thread and streams each request's outputs to asyncio.

The event loop never waits on the model: new requests and aborts go to the engine thread through a
queue, drained before every step, and outputs come back with call_soon_threadsafe. A consumer that
stops iterating (a cancelled gRPC stream, say) aborts its request, and the engine frees its KV
blocks before the next step.

The engine can be paused and resumed, and work (a weight update) run on its thread while it is
paused (engine/lifecycle.py). Each output carries the version of the weights that produced it.
"""

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import xgrammar as xgr

from shoal.runtime.engine.lifecycle import (
    ABORTED_BY_PAUSE,
    Admission,
    EngineCall,
    LifecycleConfig,
    PauseCommand,
    PauseMode,
    ResumeCommand,
)
from shoal.runtime.engine.llm_engine import EngineStats, LLMEngine, StepResult
from shoal.runtime.engine.output_processor import RequestOutput
from shoal.runtime.engine.queue_limits import QueueLimits
from shoal.runtime.engine.request import FinishReason, Request
from shoal.runtime.errors import EngineUnavailableError, InvalidRequestError, NotPausedError, PartialUpdateError
from shoal.runtime.sampling.params import SamplingParams
from shoal.runtime.structured.compiler import GrammarCompiler

log = logging.getLogger(__name__)


class EngineObserver(Protocol):
    """Told about request timings and steps (the metrics implement it). A request that stops or reaches
    a length ends in `on_finished`; one cut short (cancelled, or aborted while draining) in `on_aborted`;
    one that fails in neither (the server counts its error)."""

    def on_first_token(self, ttft_s: float, num_prompt_tokens: int) -> None: ...

    def on_tokens(self, num_tokens: int, inter_token_s: float | None) -> None: ...

    def on_finished(self, finish_reason: str, e2e_s: float, num_prompt_tokens: int, num_output_tokens: int) -> None: ...

    def on_aborted(self) -> None: ...

    def on_step(self, num_batched_tokens: int, duration_s: float, mask_s: float | None) -> None:
        """mask_s: how long the step's allowed-token masks took to fill, if it had constrained rows."""

    def on_grammar_compiled(self, kind: str, duration_s: float) -> None: ...


@dataclass
class _Stream:
    queue: asyncio.Queue
    arrival: float
    last_token_at: float | None = None
    finished: bool = False  # the engine has sent the final output (maybe not yet read)


_STOP = object()


class AsyncEngine:
    def __init__(
        self,
        engine: LLMEngine,
        queue_limits: QueueLimits,
        observer: EngineObserver | None = None,
        grammars: GrammarCompiler | None = None,  # None: the model has no tokenizer to compile for
        lifecycle: LifecycleConfig | None = None,
    ):
        lifecycle = lifecycle or LifecycleConfig()
        self.engine = engine
        self.queue_limits = queue_limits
        self.observer = observer
        self.grammars = grammars
        self.admission = Admission(lifecycle)
        self.pause_held = False  # the pause asked for holds (event loop)
        self.weights_version = lifecycle.weights_version  # as the event loop last heard
        self.weight_updates = 0
        self._frozen = False  # engine thread: a KEEP pause, no step runs
        self._idle_waiters: list[asyncio.Future] = []  # engine thread: WAIT pauses not yet holding
        self._engine_weights_version = lifecycle.weights_version  # engine thread
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._streams: dict[str, _Stream] = {}
        self._stats: EngineStats = engine.stats()
        self._submitted = 0  # written by the event loop only
        self._drained = 0  # written by the engine thread only
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self.accepting = True

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="shoal-engine", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Aborts whatever is left and ends the engine thread. A failed engine's thread is left as it
        is: it may be blocked for good (waiting on a lost tensor-parallel rank)."""
        self.accepting = False
        self._inbox.put(_STOP)
        if self._thread is not None and self._failure is None:
            await asyncio.to_thread(self._thread.join)

    def fail(self, error: BaseException) -> None:
        """From any thread: the engine can no longer serve (e.g. a tensor-parallel rank was lost).
        Every request in flight fails with it; health turns unhealthy, naming it."""
        self._failure = error
        self._loop.call_soon_threadsafe(self._fail_all, EngineUnavailableError(f"the engine failed: {error}"))

    @property
    def healthy(self) -> bool:
        return self._failure is None and self._thread is not None and self._thread.is_alive()

    @property
    def failure(self) -> BaseException | None:
        return self._failure

    @property
    def num_in_flight(self) -> int:
        return len(self._streams)

    def stats(self) -> EngineStats:
        return self._stats

    def num_waiting(self) -> int:
        return self._stats.num_waiting + (self._submitted - self._drained)

    async def generate(
        self, request_id: str, prompt_token_ids: list[int], sampling: SamplingParams, priority: int = 0
    ) -> AsyncIterator[RequestOutput]:
        """Streams the request's outputs; raises InvalidRequestError, QueueFullError or
        EngineUnavailableError before the first one if the request cannot be taken, and
        StepOutOfMemoryError after any of them if a step running it ran out of GPU memory."""
        grammar = await self._compile(sampling)
        await self.admission.enter()
        request = self._accept(request_id, prompt_token_ids, sampling, priority, grammar)
        stream = _Stream(asyncio.Queue(), arrival=time.monotonic())
        self._streams[request_id] = stream
        self._submitted += 1
        self._inbox.put(request)
        failed = False
        try:
            while True:
                item = await stream.queue.get()
                if isinstance(item, BaseException):
                    failed = True
                    raise item
                yield item
                if item.finished:
                    return
        finally:
            del self._streams[request_id]
            if not stream.finished and not failed:
                # The consumer left (a cancelled stream): abort, which frees the blocks before the next step.
                self._inbox.put(("abort", request_id))
                if self.observer is not None:
                    self.observer.on_aborted()

    @property
    def paused(self) -> bool:
        return self.admission.mode is not None

    @property
    def num_frozen(self) -> int:
        """Requests a KEEP pause holds."""
        return self._stats.num_running + self._stats.num_waiting if self.admission.mode is PauseMode.KEEP else 0

    async def pause(self, mode: PauseMode) -> None:
        """Returns once the pause holds: WAIT when nothing runs, KEEP and ABORT after the step in flight."""
        self.admission.close(mode)
        self.pause_held = False
        await self._command(lambda done: PauseCommand(mode, done))
        self.pause_held = self.admission.mode is mode  # not if a resume or another pause came meanwhile

    async def resume(self) -> None:
        await self._command(ResumeCommand)
        self.pause_held = False
        self.admission.open()

    async def run_paused(self, run: Callable[[LLMEngine], Any], weights_version: str | None = None) -> Any:
        """run(engine) on the engine thread; needs a pause that holds (NotPausedError). A run that
        changes the weights names their new version: outputs after it carry it."""
        if not self.pause_held:
            raise NotPausedError("pause the runtime first (RuntimeAdmin.Pause), and wait for it to hold")
        try:
            result = await self._command(lambda done: EngineCall(run, done, weights_version))
        except PartialUpdateError as error:
            self.weights_version = error.version
            raise
        if weights_version is not None:
            self.weights_version = weights_version
            self.weight_updates += 1
        return result

    async def _command(self, make: Callable[[asyncio.Future], Any]) -> Any:
        done = self._loop.create_future()
        self._inbox.put(make(done))
        return await done

    async def _compile(self, sampling: SamplingParams) -> xgr.CompiledGrammar | None:
        """A constrained request's grammar, compiled in a worker thread: neither the event loop nor
        the engine thread waits on it."""
        if sampling.structured is None:
            return None
        if self.grammars is None:
            raise InvalidRequestError("sampling.structured", "needs the model's tokenizer; this model has none")
        compiled, seconds = await asyncio.to_thread(self.grammars.compile, sampling.structured)
        if self.observer is not None:
            self.observer.on_grammar_compiled(sampling.structured.kind, seconds)
        return compiled

    def _accept(
        self,
        request_id: str,
        prompt_token_ids: list[int],
        sampling: SamplingParams,
        priority: int,
        grammar: xgr.CompiledGrammar | None,
    ) -> Request:
        if not self.accepting or not self.healthy:
            raise EngineUnavailableError(
                "the runtime is shutting down" if not self.accepting else "the engine has failed"
            )
        request = self.engine.make_request(request_id, prompt_token_ids, sampling, priority, grammar=grammar)
        if request_id in self._streams:
            raise InvalidRequestError("request_id", f"{request_id!r} is already in use")
        self.queue_limits.check(self.num_waiting())
        return request

    # --- engine thread ---

    def _run(self) -> None:
        try:
            while self._handle_commands(block=self._frozen or not self.engine.has_unfinished()):
                if not self._frozen and self.engine.has_unfinished():
                    result = self.engine.step()
                    self._loop.call_soon_threadsafe(self._deliver, result, self._engine_weights_version)
                self._stats = self.engine.stats()
                if not self.engine.has_unfinished():
                    self._settle(self._idle_waiters)
        except BaseException as error:  # the engine is broken: fail every request, report unhealthy
            log.exception("engine step failed")
            self._failure = error
            self._loop.call_soon_threadsafe(self._fail_all, EngineUnavailableError(f"the engine failed: {error!r}"))
            return
        for request_id in list(self._streams):
            output = self.engine.abort_request(request_id)
            if output is not None:
                self._send_outputs([output])

    def _handle_commands(self, block: bool) -> bool:
        """Applies queued adds, aborts and lifecycle commands; False once told to stop."""
        command = self._inbox.get() if block else self._next_command()
        while command is not None:
            if command is _STOP:
                return False
            if isinstance(command, Request):
                self._drained += 1
                try:
                    self.engine.add(command)
                except InvalidRequestError as error:
                    self._loop.call_soon_threadsafe(self._fail_one, command.request_id, error)
            elif isinstance(command, tuple):
                self.engine.abort_request(command[1])
            else:
                self._apply_lifecycle(command)
            command = self._next_command()
        return True

    def _apply_lifecycle(self, command: PauseCommand | ResumeCommand | EngineCall) -> None:
        if isinstance(command, EngineCall):
            self._send_outputs(self.engine.finish_in_flight())
            try:
                result = command.run(self.engine)
            except Exception as error:  # handed to the caller (a refused update, say)
                if isinstance(error, PartialUpdateError):
                    self._engine_weights_version = error.version
                self._loop.call_soon_threadsafe(_reject, command.done, error)
                return
            if command.weights_version is not None:
                self._engine_weights_version = command.weights_version
            self._loop.call_soon_threadsafe(_resolve, command.done, result)
            return
        waiters, self._idle_waiters = self._idle_waiters + [command.done], []
        self._frozen = False
        if isinstance(command, PauseCommand) and command.mode is PauseMode.KEEP:
            self._frozen = True
            self._send_outputs(self.engine.finish_in_flight())
        elif isinstance(command, PauseCommand) and command.mode is PauseMode.ABORT:
            self._send_outputs(self.engine.abort_all(ABORTED_BY_PAUSE))
        elif isinstance(command, PauseCommand) and self.engine.has_unfinished():
            self._idle_waiters = waiters  # WAIT: holds once what runs has finished
            return
        self._stats = self.engine.stats()
        self._settle(waiters)

    def _settle(self, waiters: list[asyncio.Future]) -> None:
        for done in waiters:
            self._loop.call_soon_threadsafe(_resolve, done, None)
        waiters.clear()

    def _send_outputs(self, outputs: list[RequestOutput]) -> None:
        if outputs:
            self._loop.call_soon_threadsafe(self._deliver, StepResult(outputs, 0, 0.0), self._engine_weights_version)

    def _next_command(self):
        try:
            return self._inbox.get_nowait()
        except queue.Empty:
            return None

    # --- event loop ---

    def _deliver(self, result: StepResult, weights_version: str) -> None:
        now = time.monotonic()
        if self.observer is not None and result.num_batched_tokens:
            self.observer.on_step(result.num_batched_tokens, result.duration_s, result.mask_s)
        for output in result.outputs:
            stream = self._streams.get(output.request_id)
            if stream is None:
                continue  # the consumer has gone; its abort is on the way
            self._observe(stream, output, now)
            stream.queue.put_nowait(replace(output, weights_version=weights_version))
        for request_id, error in result.failed.items():
            self._fail_one(request_id, error)

    def _observe(self, stream: _Stream, output: RequestOutput, now: float) -> None:
        if output.finished:
            stream.finished = True
            self.queue_limits.record_finish(now)
        if self.observer is None:
            return
        if output.new_token_ids:
            if stream.last_token_at is None:
                self.observer.on_first_token(now - stream.arrival, output.num_prompt_tokens)
                self.observer.on_tokens(len(output.new_token_ids), None)
            else:
                self.observer.on_tokens(len(output.new_token_ids), now - stream.last_token_at)
            stream.last_token_at = now
        if output.finished and output.finish_reason is FinishReason.ABORT:
            self.observer.on_aborted()  # by the server, draining
        elif output.finished:
            self.observer.on_finished(
                output.finish_reason.value, now - stream.arrival, output.num_prompt_tokens, output.num_output_tokens
            )

    def _fail_one(self, request_id: str, error: BaseException) -> None:
        stream = self._streams.get(request_id)
        if stream is not None:
            stream.queue.put_nowait(error)

    def _fail_all(self, error: BaseException) -> None:
        for stream in self._streams.values():
            stream.queue.put_nowait(error)


def _resolve(done: asyncio.Future, result: Any) -> None:
    if not done.done():
        done.set_result(result)


def _reject(done: asyncio.Future, error: BaseException) -> None:
    if not done.done():
        done.set_exception(error)
