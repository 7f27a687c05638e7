"""The realtime session's events, text only, named as OpenAI's Realtime API (beta) names them.

Client -> router: session.update, conversation.item.create, response.create, response.cancel.
Router -> client: session.created, session.updated, conversation.item.created, response.created,
response.text.delta, response.text.done, response.done, error.
Pure: parsing client events into settings and conversation items, and building server events.
Values are checked here, as they arrive, for what the runtime's request can carry (max_tokens is an
int32; text must be UTF-8, which a lone surrogate such as JSON's "\\ud800" is not), so a bad one is
refused with an `error` event naming it, never later by a response that cannot be built.
"""

import itertools
import uuid
from dataclasses import dataclass, replace

from shoal.router.errors import InvalidRequest
from shoal.router.openai.fields import Body
from shoal.router.request import INT32_MAX, check_text

CLIENT_EVENTS = ("session.update", "conversation.item.create", "response.create", "response.cancel")
ITEM_ROLES = ("system", "user", "assistant")
_ids = itertools.count(1)


@dataclass(frozen=True)
class SessionSettings:
    instructions: str = ""
    temperature: float | None = None
    max_output_tokens: int | None = None
    qos: str | None = None  # None: the tenant's default

    def public(self) -> dict:
        return {
            "instructions": self.instructions,
            "temperature": self.temperature,
            "max_response_output_tokens": self.max_output_tokens if self.max_output_tokens is not None else "inf",
            "modalities": ["text"],
            "qos_class": self.qos,
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
    body.ignored(
        "modalities", "model", "output_modalities", "type", "tools", "tool_choice", "voice", "conversation", "metadata"
    )
    body.done()
    return replace(settings, **changes)


def parse_item(data: object) -> tuple[str, str]:
    """conversation.item.create's item -> (role, text)."""
    body = Body(data)
    item_type = body.string("type", "message")
    if item_type != "message":
        raise InvalidRequest("item.type", f"Only message items are supported, got {item_type!r}.")
    role = body.string("role", choices=ITEM_ROLES)
    content = body.raw("content")
    if not isinstance(content, list) or not content:
        raise InvalidRequest("item.content", "Expected a non-empty array of content parts.")
    texts = []
    for index, part in enumerate(content):
        if (
            not isinstance(part, dict)
            or part.get("type") not in ("input_text", "text")
            or not isinstance(part.get("text"), str)
        ):
            raise InvalidRequest(f"item.content[{index}]", "Only input_text and text content parts are supported.")
        check_text(f"item.content[{index}].text", part["text"])
        texts.append(part["text"])
    body.ignored("id", "object", "status")
    body.done()
    return role, "".join(texts)


def item_object(item_id: str, role: str, text: str, status: str = "completed") -> dict:
    part_type = "text" if role == "assistant" else "input_text"
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": role,
        "status": status,
        "content": [{"type": part_type, "text": text}],
    }


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
