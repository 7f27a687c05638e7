"""The realtime session's events, text and function calls only, named as OpenAI's Realtime API
(beta) names them.

Client -> router: session.update, conversation.item.create, response.create, response.cancel.
Router -> client: session.created, session.updated, conversation.item.created, response.created,
response.text.delta, response.text.done, response.output_item.added,
response.function_call_arguments.delta, response.function_call_arguments.done,
response.output_item.done, response.done, error.
Pure: parsing client events into settings (openai/flat_tools.py reads the function tools), and building server
events; the conversation's items are items.py's.
Values are checked here, as they arrive, for what the runtime's request can carry (max_tokens is an
int32; text must be UTF-8, which a lone surrogate such as JSON's "\\ud800" is not), so a bad one is
refused with an `error` event naming it, never later by a response that cannot be built.
"""

import itertools
import uuid
from dataclasses import dataclass, replace

from shoal.router.chat_prompt import check_tools
from shoal.router.openai.fields import Body
from shoal.router.openai.flat_tools import public_choice, public_tools, read_flat_choice, read_flat_tools
from shoal.router.request import INT32_MAX
from shoal.v1 import runtime_pb2 as pb

CLIENT_EVENTS = ("session.update", "conversation.item.create", "response.create", "response.cancel")
_ids = itertools.count(1)


@dataclass(frozen=True)
class SessionSettings:
    instructions: str = ""
    temperature: float | None = None
    max_output_tokens: int | None = None
    qos: str | None = None  # None: the tenant's default
    tools: tuple[pb.Tool, ...] = ()
    tool_choice: int = pb.TOOL_CHOICE_AUTO  # a pb.ToolChoice
    tool_choice_name: str = ""  # the function that TOOL_CHOICE_NAMED forces

    def public(self) -> dict:
        return {
            "instructions": self.instructions,
            "temperature": self.temperature,
            "max_response_output_tokens": self.max_output_tokens if self.max_output_tokens is not None else "inf",
            "modalities": ["text"],
            "qos_class": self.qos,
            "tools": public_tools(self.tools),
            "tool_choice": public_choice(self.tool_choice, self.tool_choice_name),
        }


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def event(event_type: str, **fields) -> dict:
    return {"type": event_type, "event_id": f"event_{next(_ids)}", **fields}


def error_event(
    error_type: str, code: str | None, message: str, param: str | None = None, event_id: str | None = None
) -> dict:
    return event(
        "error", error={"type": error_type, "code": code, "message": message, "param": param, "event_id": event_id}
    )


def apply_settings(settings: SessionSettings, data: object) -> SessionSettings:
    """session.update's `session` (or response.create's `response`) over the current settings."""
    body = Body(data if data is not None else {})
    changes = {}
    if body.has("instructions"):
        changes["instructions"] = body.string("instructions")
    if body.has("temperature"):
        changes["temperature"] = body.number("temperature", minimum=0, maximum=2)
    for name in ("max_response_output_tokens", "max_output_tokens"):
        if body.has(name):
            value = body.raw(name)
            changes["max_output_tokens"] = None if value == "inf" else body.integer(name, minimum=1, maximum=INT32_MAX)
    if body.has("qos_class"):
        changes["qos"] = body.string("qos_class", choices=("realtime", "batch"))
    if body.has("tools"):
        changes["tools"] = read_flat_tools(body.raw("tools"))
    if body.has("tool_choice"):
        changes["tool_choice"], changes["tool_choice_name"] = read_flat_choice(body.raw("tool_choice"))
    body.ignored("modalities", "model", "output_modalities", "type", "voice", "conversation", "metadata")
    body.done()
    settings = replace(settings, **changes)
    if "tools" in changes or "tool_choice" in changes:  # the tools with the choice, as a request will carry them
        chat = pb.ChatMessages(
            tools=settings.tools, tool_choice=settings.tool_choice, tool_choice_name=settings.tool_choice_name
        )
        check_tools(chat, str)  # the checks of every surface's chat prompt, as the tools arrive
    return settings


def response_object(
    response_id: str, status: str, usage: dict | None = None, details: dict | None = None, output: list | None = None
) -> dict:
    return {
        "id": response_id,
        "object": "realtime.response",
        "status": status,
        "status_details": details,
        "output": output or [],
        "usage": usage,
    }
