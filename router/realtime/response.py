"""One response of a realtime session, from just after response.created to its one response.done.

Two tasks: the stream (dispatch, then a response.text.delta per runtime message with text, and the
events of each function call it makes) and the report around it. `cancel()` cancels only the
stream, at any moment, even before it first ran (a task cancelled that early never runs its body,
so the stream cannot report its own end); the report waits for the stream however it ended
(finished, failed, cancelled, crashed) and sends response.text.done, the last call's done events
and response.done, once. Only a client that is gone gets no response.done.

Output items join the conversation as they begin, in output order (a client may send a call's
output as soon as the call's arguments are done, before response.done), and are updated in their
place as they end. The runtime streams one call after another: a call's first piece (id, name)
ends the call before it (response.function_call_arguments.done, response.output_item.done); the
report ends the last.

Leaving the stream early closes its Generation, which cancels the runtime call (the runtime frees
the KV blocks) and gives back the pool slot and the tenant's lease.
"""

import asyncio
import logging
from dataclasses import dataclass, replace

from shoal.router.dispatch import Dispatcher
from shoal.router.errors import RouterError
from shoal.router.realtime import events
from shoal.router.realtime.items import FunctionCall, Item, Message
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
    if final.finish_reason in (pb.FINISH_REASON_STOP, pb.FINISH_REASON_TOOL_CALLS):
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
        conversation: list[Item],
    ):
        self.id = response_id
        self.item_id = events.new_id("item")  # the message's, if the answer has text
        self.request = request
        self.peer = peer
        self.dispatcher = dispatcher
        self.conversation = conversation  # the session's: the output joins it, even cut short
        self._places: dict[str, int] = {}  # output item id -> its index in the conversation, in output order
        self._parts: list[str] = []
        self._calls: dict[int, FunctionCall] = {}  # by the runtime's index; arguments "" until the call ends
        self._arguments: dict[int, list[str]] = {}
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
                    if not self._parts:
                        self._put(Message(self.item_id, "assistant", "", "in_progress"))
                    self._parts.append(message.text)
                    await self.peer.send(
                        events.event(
                            "response.text.delta", response_id=self.id, item_id=self.item_id, delta=message.text
                        )
                    )
                for piece in message.tool_calls:
                    await self._on_call_piece(piece)
        finally:
            await generation.close()  # cancels the runtime call if the stream ends early
        return finished(generation.finals[-1])  # messages() ends only after the final message

    async def _on_call_piece(self, piece: pb.ToolCallDelta) -> None:
        if piece.index not in self._calls:  # the call's first piece: its id and name
            for ended in self._end_calls("completed"):
                await self._send_call_done(ended)
            call = self._calls[piece.index] = FunctionCall(
                events.new_id("item"), piece.id, piece.name, "", "in_progress"
            )
            self._arguments[piece.index] = []
            self._put(call)
            await self.peer.send(
                events.event(
                    "response.output_item.added",
                    response_id=self.id,
                    output_index=self._output_index(call),
                    item=call.public(),
                )
            )
        call = self._calls[piece.index]
        if call.status != "in_progress":
            raise RuntimeError(f"the runtime sent more of function call {piece.index} after the next one began")
        if piece.arguments:
            self._arguments[piece.index].append(piece.arguments)
            await self.peer.send(
                events.event(
                    "response.function_call_arguments.delta",
                    response_id=self.id,
                    item_id=call.id,
                    output_index=self._output_index(call),
                    call_id=call.call_id,
                    delta=piece.arguments,
                )
            )

    def _end_calls(self, status: str) -> list[FunctionCall]:
        """The calls still streaming, ended with their whole arguments (in the conversation too)."""
        ended = []
        for index, call in self._calls.items():
            if call.status == "in_progress":
                call = self._calls[index] = replace(call, arguments="".join(self._arguments[index]), status=status)
                self._put(call)
                ended.append(call)
        return ended

    async def _send_call_done(self, call: FunctionCall) -> None:
        output_index = self._output_index(call)
        await self.peer.send(
            events.event(
                "response.function_call_arguments.done",
                response_id=self.id,
                item_id=call.id,
                output_index=output_index,
                call_id=call.call_id,
                name=call.name,
                arguments=call.arguments,
            )
        )
        await self.peer.send(
            events.event(
                "response.output_item.done", response_id=self.id, output_index=output_index, item=call.public()
            )
        )

    def _put(self, item: Item) -> None:
        """The item joins the conversation, or takes the place of its earlier state there."""
        if item.id in self._places:
            self.conversation[self._places[item.id]] = item
        else:
            self._places[item.id] = len(self.conversation)
            self.conversation.append(item)

    def _output_index(self, item: Item) -> int:
        return list(self._places).index(item.id)

    async def _run_report(self) -> None:
        await asyncio.wait({self._stream})
        outcome = self._outcome()
        text = "".join(self._parts)
        if text:
            self._put(Message(self.item_id, "assistant", text, outcome.status))
        ended = self._end_calls("completed" if outcome.status == "completed" else "incomplete")
        output = [self.conversation[place].public() for place in self._places.values()]
        try:
            if outcome.error is not None:
                await self.peer.send(outcome.error)
            if text:
                await self.peer.send(
                    events.event("response.text.done", response_id=self.id, item_id=self.item_id, text=text)
                )
            for call in ended:
                await self._send_call_done(call)
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
