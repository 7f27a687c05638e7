"""The Responses API's `instructions` and `input` -> the runtime's chat messages, and where each came from.

`input` is a string (one user turn) or a list of items: messages (`{"type"?: "message", "role":
user|system|developer|assistant, "content": str | [{"type": "input_text"|"output_text", "text"}]}`),
`function_call` items (`call_id`, `name`, `arguments`: the model's call, an assistant turn) and
`function_call_output` items (`call_id`, `output`: a `tool` turn). Calls in a row, or right after
an assistant's text, are one assistant turn, as the chat API and chat templates have them. An item
a previous response returned may be sent back as it is: its `id`, `status` and a text part's
`annotations` and `logprobs` are accepted and change nothing. `instructions` is a leading system turn.

request.validated checks the messages under the runtime's names (`messages[2].content`); ChatInput.name
says what this request called that field (`input[1].output`).
"""

import dataclasses
import re
from dataclasses import dataclass, field

from shoal.router.errors import InvalidRequest
from shoal.router.openai.fields import Body, prefixed
from shoal.router.text import check_text
from shoal.v1 import runtime_pb2 as pb

ROLES = ("user", "system", "developer", "assistant")
ITEM_TYPES = ("message", "function_call", "function_call_output")
TEXT_PARTS = ("input_text", "output_text")
_CALL_FIELDS = {"id": "call_id"}  # a chat tool call's fields, as a function_call item calls them
_OUTPUT_FIELDS = (("content", "output"), ("tool_call_id", "call_id"))  # a tool turn's, as its item does
_MESSAGE_FIELD = re.compile(r"messages\[(\d+)\](?:\.tool_calls\[(\d+)\])?(?:\.(\w+))?$")


@dataclass(frozen=True)
class Origin:
    """Where one chat message came from: its item (`input[2]`), or the string that is all of it."""

    param: str
    whole: bool = False  # the message is the string `param` (`input`, `instructions`)
    renames: tuple[tuple[str, str], ...] = ()  # its fields' names on the item, where they differ
    calls: tuple[str, ...] = ()  # the function_call item of each of its tool calls

    def name(self, field: str | None, call: int | None) -> str:
        if call is not None:
            item = self.calls[call]
            return f"{item}.{_CALL_FIELDS.get(field, field)}" if field else item
        if field is None or self.whole:
            return self.param
        return f"{self.param}.{dict(self.renames).get(field, field)}"


@dataclass
class ChatInput:
    messages: list[pb.ChatMessage] = field(default_factory=list)
    origins: list[Origin] = field(default_factory=list)  # one per message

    def name(self, field: str) -> str | None:
        """`messages[3].tool_calls[1].id` -> `input[5].call_id`; None for a field not of the messages."""
        if field == "messages":
            return "input"
        match = _MESSAGE_FIELD.match(field)
        if match is None or int(match[1]) >= len(self.origins):
            return None
        call = int(match[2]) if match[2] is not None else None
        return self.origins[int(match[1])].name(match[3], call)

    def add(self, message: pb.ChatMessage, origin: Origin) -> None:
        self.messages.append(message)
        self.origins.append(origin)


def read_input(value, instructions: str | None) -> ChatInput:
    """The request's `input` (as sent) after its `instructions` (checked text)."""
    chat = ChatInput()
    if instructions:
        chat.add(pb.ChatMessage(role="system", content=instructions), Origin("instructions", whole=True))
    if value is None:
        raise InvalidRequest("input", "Missing required parameter: 'input'.")
    if isinstance(value, str):
        chat.add(pb.ChatMessage(role="user", content=value), Origin("input", whole=True))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            _read_item(chat, item, f"input[{index}]")
    else:
        raise InvalidRequest("input", "Invalid 'input': expected a string or a non-empty array of input items.")
    return chat


def _read_item(chat: ChatInput, item, param: str) -> None:
    _check_object(item, param)
    with prefixed(param + "."):
        fields = Body(item)
        kind = fields.string("type", "message", choices=ITEM_TYPES)
        fields.ignored("id", "status")  # an item a previous response returned, sent back
        if kind == "message":
            role = fields.string("role", choices=ROLES)
            content = _text(fields.raw("content"), "content")
            chat.add(pb.ChatMessage(role=role, content=content), Origin(param))
        elif kind == "function_call":
            call = pb.ToolCall(
                id=fields.string("call_id"), name=fields.string("name"), arguments=fields.string("arguments")
            )
            _add_call(chat, call, param)
        else:
            call_id = fields.string("call_id")
            output = _text(fields.raw("output"), "output")
            chat.add(
                pb.ChatMessage(role="tool", content=output, tool_call_id=call_id), Origin(param, renames=_OUTPUT_FIELDS)
            )
        fields.done()


def _add_call(chat: ChatInput, call: pb.ToolCall, param: str) -> None:
    """Joins the assistant's turn just before, or begins one."""
    if chat.messages and chat.messages[-1].role == "assistant":
        chat.messages[-1].tool_calls.append(call)
        chat.origins[-1] = dataclasses.replace(chat.origins[-1], calls=(*chat.origins[-1].calls, param))
    else:
        chat.add(pb.ChatMessage(role="assistant", tool_calls=[call]), Origin(param, calls=(param,)))


def _text(value, name: str) -> str:
    """A string, or text parts joined; checked before protobuf, which cannot carry a lone surrogate."""
    if isinstance(value, str):
        check_text(name, value)
        return value
    if value is None:
        raise InvalidRequest(name, f"Missing required parameter: '{name}'.")
    if not isinstance(value, list):
        raise InvalidRequest(name, f"Invalid type for '{name}': expected a string or an array of text parts.")
    texts = []
    for index, part in enumerate(value):
        param = f"{name}[{index}]"
        _check_object(part, param)
        with prefixed(param + "."):
            fields = Body(part)
            kind = fields.string("type")
            if kind not in TEXT_PARTS:
                raise InvalidRequest("type", f"Only text parts ({', '.join(TEXT_PARTS)}) are supported, got {kind!r}.")
            texts.append(fields.string("text"))
            fields.ignored("annotations", "logprobs")  # an output_text part a previous response returned
            fields.done()
    return "".join(texts)


def _check_object(value, param: str) -> None:
    if not isinstance(value, dict):
        raise InvalidRequest(param, f"Invalid type for '{param}': expected an object.")
