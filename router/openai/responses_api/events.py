"""A response's output, built up from the runtime's messages, and the stream events that tell it.

The model's text is an assistant `message` item with one `output_text` part; each function call is
a `function_call` item, begun by the call's first piece (its id and name) and filled by its
argument fragments. An item opens when its first piece arrives and closes when the next item
begins or the answer ends. Each step returns the events that announce it, numbered
(`sequence_number`) from 0: a streamed response sends them, a whole one drops them and sends
`response()` at the end, so both carry the same output.
"""

from dataclasses import dataclass

from shoal.router.errors import RouterError
from shoal.router.openai.responses import ResponseMeta
from shoal.router.openai.responses_api.objects import (
    IN_PROGRESS,
    Echo,
    Outcome,
    function_call_item,
    message_item,
    output_text,
    response_object,
)
from shoal.v1 import runtime_pb2 as pb


@dataclass
class _Message:
    id: str
    output_index: int
    text: str = ""
    status: str = "in_progress"

    def item(self, content: bool = True) -> dict:
        """The item; content False: as it is announced, before its part is."""
        return message_item(self.id, self.status, self.text if content else None)


@dataclass
class _Call:
    id: str
    output_index: int
    call_id: str
    name: str
    arguments: str = ""
    status: str = "in_progress"

    def item(self) -> dict:
        return function_call_item(self.id, self.status, self.call_id, self.name, self.arguments)


class ResponseBuilder:
    def __init__(self, meta: ResponseMeta, echo: Echo):
        self.meta = meta
        self.echo = echo
        self.items: list[_Message | _Call] = []
        self.outcome = IN_PROGRESS
        self._open: _Message | _Call | None = None
        self._calls: dict[int, _Call] = {}  # by the runtime's index of the call
        self._sequence = 0

    def response(self) -> dict:
        return response_object(self.meta, self.echo, self.outcome, [item.item() for item in self.items])

    def start(self) -> list[dict]:
        return [
            self._event("response.created", response=self.response()),
            self._event("response.in_progress", response=self.response()),
        ]

    def add(self, message: pb.GenerateResponse) -> list[dict]:
        events = []
        if message.text:
            if not isinstance(self._open, _Message):
                events += self._open_message()
            self._open.text += message.text
            delta = self._text_event("response.output_text.delta", self._open, delta=message.text, logprobs=[])
            events.append(delta)
        for piece in message.tool_calls:
            events += self._call_piece(piece)
        return events

    def finish(self, final: pb.GenerateResponse) -> list[dict]:
        """After the last message: closes what is open and ends the response."""
        incomplete = final.finish_reason == pb.FINISH_REASON_LENGTH
        status = "incomplete" if incomplete else "completed"
        events = [] if self.items else self._open_message()  # an answer of nothing is an empty message
        events += self._close(status)
        self.outcome = Outcome(status, final.usage, "max_output_tokens" if incomplete else None)
        events.append(self._event(f"response.{status}", response=self.response()))
        return events

    def fail(self, error: RouterError) -> list[dict]:
        """The runtime failed midway: an `error` event, then the response as failed."""
        if self._open is not None:
            self._open.status = "incomplete"
        self.outcome = Outcome("failed", error=error)
        return [
            self._event("error", code=error.code or error.error_type, message=error.message, param=error.param),
            self._event("response.failed", response=self.response()),
        ]

    def _call_piece(self, piece: pb.ToolCallDelta) -> list[dict]:
        events = []
        if piece.id:  # a call's first piece
            events += self._close("completed")
            call = _Call(f"fc_{self._item_id_suffix()}", len(self.items), piece.id, piece.name)
            self.items.append(call)
            self._calls[piece.index] = self._open = call
            events.append(self._item_event("response.output_item.added", call, call.item()))
        call = self._calls[piece.index]
        if piece.arguments:
            call.arguments += piece.arguments
            events.append(self._call_event("response.function_call_arguments.delta", call, delta=piece.arguments))
        return events

    def _open_message(self) -> list[dict]:
        events = self._close("completed")
        message = _Message(f"msg_{self._item_id_suffix()}", len(self.items))
        self.items.append(message)
        self._open = message
        return events + [
            self._item_event("response.output_item.added", message, message.item(content=False)),
            self._text_event("response.content_part.added", message, part=output_text("")),
        ]

    def _close(self, status: str) -> list[dict]:
        """Closes the open item, if any, as `status`."""
        item, self._open = self._open, None
        if item is None:
            return []
        item.status = status
        if isinstance(item, _Message):
            return [
                self._text_event("response.output_text.done", item, text=item.text, logprobs=[]),
                self._text_event("response.content_part.done", item, part=output_text(item.text)),
                self._item_event("response.output_item.done", item, item.item()),
            ]
        return [
            self._call_event("response.function_call_arguments.done", item, arguments=item.arguments),
            self._item_event("response.output_item.done", item, item.item()),
        ]

    def _item_id_suffix(self) -> str:
        return f"{self.meta.id.removeprefix('resp_')}_{len(self.items)}"

    def _item_event(self, kind: str, item: _Message | _Call, body: dict) -> dict:
        return self._event(kind, output_index=item.output_index, item=body)

    def _text_event(self, kind: str, message: _Message, **fields) -> dict:
        return self._event(kind, item_id=message.id, output_index=message.output_index, content_index=0, **fields)

    def _call_event(self, kind: str, call: _Call, **fields) -> dict:
        return self._event(kind, item_id=call.id, output_index=call.output_index, **fields)

    def _event(self, kind: str, **fields) -> dict:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event
