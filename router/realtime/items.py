"""The conversation of a realtime session: its items, as the Realtime API shapes them, and the chat
messages they become in the runtime's request.

Items: `message` (system, user or assistant text), `function_call` (the assistant's call of a
function: call_id, name, arguments as JSON text) and `function_call_output` (the client's result
of a call, by its call_id). The client creates any of them with conversation.item.create; a
response adds its message and its calls.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from shoal.router.chat_prompt import TOOL_NAME
from shoal.router.errors import InvalidRequest
from shoal.router.openai.fields import Body, prefixed
from shoal.router.realtime.events import new_id
from shoal.router.text import check_text
from shoal.v1 import runtime_pb2 as pb

ITEM_TYPES = ("message", "function_call", "function_call_output")
ITEM_ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    id: str
    role: str  # one of ITEM_ROLES
    text: str
    status: str = "completed"

    @property
    def num_chars(self) -> int:
        return len(self.text)

    def public(self) -> dict:
        part_type = "text" if self.role == "assistant" else "input_text"
        return {
            **_head(self.id, "message", self.status),
            "role": self.role,
            "content": [{"type": part_type, "text": self.text}],
        }


@dataclass(frozen=True)
class FunctionCall:
    id: str
    call_id: str
    name: str
    arguments: str  # JSON text, as the model wrote it (a call cut short holds only its start)
    status: str = "completed"

    @property
    def num_chars(self) -> int:
        return len(self.name) + len(self.arguments)

    def public(self) -> dict:
        fields = {"call_id": self.call_id, "name": self.name, "arguments": self.arguments}
        return {**_head(self.id, "function_call", self.status), **fields}


@dataclass(frozen=True)
class FunctionCallOutput:
    id: str
    call_id: str
    output: str

    @property
    def num_chars(self) -> int:
        return len(self.output)

    def public(self) -> dict:
        return {**_head(self.id, "function_call_output", "completed"), "call_id": self.call_id, "output": self.output}


Item = Message | FunctionCall | FunctionCallOutput


def parse_item(data: object) -> Item:
    """conversation.item.create's item; errors name its fields `item.X`."""
    if not isinstance(data, dict):
        raise InvalidRequest("item", "Invalid type for 'item': expected an object.")
    with prefixed("item."):
        body = Body(data)
        item_type = body.string("type", "message", choices=ITEM_TYPES)
        body.ignored("id", "object", "status")  # the router names its items; a status changes nothing
        if item_type == "message":
            item = Message(new_id("item"), body.string("role", choices=ITEM_ROLES), _text(body.raw("content")))
        elif item_type == "function_call":
            item = FunctionCall(new_id("item"), _call_id(body), _function_name(body), body.string("arguments"))
        else:
            item = FunctionCallOutput(new_id("item"), _call_id(body), body.string("output"))
        body.done()
    return item


def chat_messages(items: Sequence[Item]) -> list[pb.ChatMessage]:
    """The conversation as the runtime's chat messages: function calls in a row are one assistant
    turn's tool_calls (after its text, if the turn has any); a function's output is a `tool` turn."""
    messages: list[pb.ChatMessage] = []
    names: dict[str, str] = {}  # call_id -> the function's name, which some chat templates show with its output
    for item in items:
        if isinstance(item, Message):
            messages.append(pb.ChatMessage(role=item.role, content=item.text))
        elif isinstance(item, FunctionCall):
            if not messages or messages[-1].role != "assistant":
                messages.append(pb.ChatMessage(role="assistant"))
            messages[-1].tool_calls.append(pb.ToolCall(id=item.call_id, name=item.name, arguments=item.arguments))
            names[item.call_id] = item.name
        else:
            messages.append(
                pb.ChatMessage(
                    role="tool", content=item.output, tool_call_id=item.call_id, name=names.get(item.call_id, "")
                )
            )
    return messages


def _head(item_id: str, item_type: str, status: str) -> dict:
    return {"id": item_id, "object": "realtime.item", "type": item_type, "status": status}


def _text(content: object) -> str:
    if not isinstance(content, list) or not content:
        raise InvalidRequest("content", "Expected a non-empty array of content parts.")
    texts = []
    for index, part in enumerate(content):
        if (
            not isinstance(part, dict)
            or part.get("type") not in ("input_text", "text")
            or not isinstance(part.get("text"), str)
        ):
            raise InvalidRequest(f"content[{index}]", "Only input_text and text content parts are supported.")
        check_text(f"content[{index}].text", part["text"])
        texts.append(part["text"])
    return "".join(texts)


def _call_id(body: Body) -> str:
    call_id = body.string("call_id")
    if not call_id:
        raise InvalidRequest("call_id", "Invalid 'call_id': expected a non-empty string.")
    return call_id


def _function_name(body: Body) -> str:
    name = body.string("name")
    if not TOOL_NAME.fullmatch(name):
        raise InvalidRequest(
            "name", f"Invalid 'name': {name!r} is not a function name (1 to 64 letters, digits, '_' or '-')."
        )
    return name
