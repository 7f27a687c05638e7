"""One response of a realtime session, from just after response.created to its one response.done.

Two tasks: the stream (dispatch, then a response.text.delta per runtime message) and the report
around it. `cancel()` cancels only the stream, at any moment, even before it first ran (a task
cancelled that early never runs its body, so the stream cannot report its own end); the report
waits for the stream however it ended (finished, failed, cancelled, crashed) and sends
response.text.done and response.done, once. Only a client that is gone gets no response.done.

Leaving the stream early closes its Generation, which cancels the runtime call (the runtime frees
the KV blocks) and gives back the pool slot and the tenant's lease.
"""

import asyncio
import logging
from dataclasses import dataclass

from shoal.router.dispatch import Dispatcher
from shoal.router.errors import RouterError
from shoal.router.realtime import events
from shoal.router.realtime.peer import Peer, PeerGone
from shoal.router.request import InferenceRequest
from shoal.v1 import runtime_pb2 as pb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    status: str  # completed, incomplete, cancelled, failed
    details: dict | None = None
    usage: dict | None = None
    error: dict | None = None  # the `error` event that goes first, for a failed response


def finished(final: pb.GenerateResponse) -> Outcome:
    """The outcome of a stream that reached the runtime's last message."""
    u = final.usage
    usage = {
        "input_tokens": u.prompt_tokens,
        "output_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "input_token_details": {"cached_tokens": u.cached_prompt_tokens},
    }
    if final.finish_reason == pb.FINISH_REASON_STOP:
        return Outcome("completed", usage=usage)
    return Outcome("incomplete", {"type": "incomplete", "reason": "max_output_tokens"}, usage)


def failed(error_type: str, code: str | None, message: str, param: str | None = None) -> Outcome:
    details = {"type": "failed", "error": {"type": error_type, "code": code, "message": message}}
    return Outcome("failed", details, error=events.error_event(error_type, code, message, param))


class Response:
    """Starts streaming at once; `done` once response.done is sent (or the client is gone)."""

    def __init__(
        self,
        response_id: str,
        request: InferenceRequest,
        peer: Peer,
        dispatcher: Dispatcher,
        conversation: list[tuple[str, str]],
    ):
        self.id = response_id
        self.item_id = events.new_id("item")
        self.request = request
        self.peer = peer
        self.dispatcher = dispatcher
        self.conversation = conversation  # the session's: the answer joins it, even cut short
        self._parts: list[str] = []
        self._cancel_reason = "client_cancelled"
        self._stream = asyncio.create_task(self._run_stream())
        self._report = asyncio.create_task(self._run_report())

    @property
    def done(self) -> bool:
        return self._report.done()

    def cancel(self, reason: str) -> None:
        """Stops the stream (a no-op once it ended); the report still sends response.done."""
        if not self._stream.done():
            self._cancel_reason = reason
            self._stream.cancel()

    async def wait(self) -> None:
        """Until response.done is sent; never cancels the response (a cancelled waiter just stops waiting)."""
        await asyncio.wait({self._report})

    async def _run_stream(self) -> Outcome:
        generation = await self.dispatcher.start(self.request)
        try:
            async for message in generation.messages():
                if message.text:
                    self._parts.append(message.text)
                    await self.peer.send(
                        events.event(
                            "response.text.delta", response_id=self.id, item_id=self.item_id, delta=message.text
                        )
                    )
        finally:
            await generation.close()  # cancels the runtime call if the stream ends early
        return finished(generation.finals[-1])  # messages() ends only after the final message

    async def _run_report(self) -> None:
        await asyncio.wait({self._stream})
        outcome = self._outcome()
        text = "".join(self._parts)
        if text:
            self.conversation.append(("assistant", text))
        output = [events.item_object(self.item_id, "assistant", text, outcome.status)] if text else []
        try:
            if outcome.error is not None:
                await self.peer.send(outcome.error)
            if text:
                await self.peer.send(
                    events.event("response.text.done", response_id=self.id, item_id=self.item_id, text=text)
                )
            await self.peer.send(
                events.event(
                    "response.done",
                    response=events.response_object(self.id, outcome.status, outcome.usage, outcome.details, output),
                )
            )
        except PeerGone:
            pass  # nobody is left to tell

    def _outcome(self) -> Outcome:
        if self._stream.cancelled() or isinstance(self._stream.exception(), PeerGone):  # the latter, told nobody
            return Outcome("cancelled", {"type": "cancelled", "reason": self._cancel_reason})
        error = self._stream.exception()
        if error is None:
            return self._stream.result()
        if isinstance(error, RouterError):
            return failed(error.error_type, error.code, error.message, error.param)
        log.error("realtime response %s failed", self.id, exc_info=error)
        return failed("server_error", None, "The server had an error while processing your request.")
