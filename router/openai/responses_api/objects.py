"""The Responses API's objects: the `response` (which repeats its request's settings), its output
items (an assistant `message` with `output_text` parts, `function_call`s) and its usage."""

import time
from dataclasses import dataclass

from shoal.router.errors import RouterError
from shoal.router.openai.responses import ResponseMeta
from shoal.v1 import runtime_pb2 as pb

DEFAULT_TEMPERATURE = 1.0  # the runtime's, and OpenAI's, when a request gives none
DEFAULT_TOP_P = 1.0


@dataclass(frozen=True)
class Echo:
    """What a response repeats of its request. The text format and tools are the request's own JSON,
    checked, and only ever sent back."""

    instructions: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    text_format: dict | None = None  # None: plain text
    tools: tuple[dict, ...] = ()
    tool_choice: str | dict = "auto"
    parallel_tool_calls: bool = True
    metadata: dict[str, str] | None = None
    user: str | None = None


@dataclass(frozen=True)
class Outcome:
    """How a response ended; its status and what goes with it."""

    status: str  # "in_progress", "completed", "incomplete" or "failed"
    usage: pb.Usage | None = None  # once it has ended
    incomplete_reason: str | None = None
    error: RouterError | None = None  # what failed it


IN_PROGRESS = Outcome("in_progress")


def response_object(meta: ResponseMeta, echo: Echo, outcome: Outcome, output: list[dict]) -> dict:
    return {
        "id": meta.id,
        "object": "response",
        "created_at": meta.created,
        "status": outcome.status,
        "completed_at": int(time.time()) if outcome.status == "completed" else None,
        "background": False,
        "error": _error(outcome.error) if outcome.error is not None else None,
        "incomplete_details": {"reason": outcome.incomplete_reason} if outcome.incomplete_reason else None,
        "instructions": echo.instructions,
        "max_output_tokens": echo.max_output_tokens,
        "max_tool_calls": None,
        "model": meta.model,
        "output": output,
        "parallel_tool_calls": echo.parallel_tool_calls,
        "previous_response_id": None,
        "reasoning": None,
        "service_tier": meta.service_tier,
        "store": False,  # nothing is kept: a later request cannot refer to this one
        "temperature": DEFAULT_TEMPERATURE if echo.temperature is None else echo.temperature,
        "text": {"format": echo.text_format or {"type": "text"}},
        "tool_choice": echo.tool_choice,
        "tools": list(echo.tools),
        "top_p": DEFAULT_TOP_P if echo.top_p is None else echo.top_p,
        "truncation": "disabled",
        "usage": usage(outcome.usage) if outcome.usage is not None else None,
        "user": echo.user,
        "metadata": echo.metadata or {},
    }


def usage(counts: pb.Usage) -> dict:
    return {
        "input_tokens": counts.prompt_tokens,
        "input_tokens_details": {"cached_tokens": counts.cached_prompt_tokens, "cache_write_tokens": 0},
        "output_tokens": counts.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": counts.prompt_tokens + counts.completion_tokens,
    }


def _error(error: RouterError) -> dict:
    """A Response's `error`, whose code is one of OpenAI's few for a failed response."""
    return {"code": "rate_limit_exceeded" if error.http_status == 429 else "server_error", "message": error.message}


def message_item(item_id: str, status: str, text: str | None) -> dict:
    """An assistant message; text None: just opened, no content part yet."""
    content = [] if text is None else [output_text(text)]
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def output_text(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": []}


def function_call_item(item_id: str, status: str, call_id: str, name: str, arguments: str) -> dict:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }
