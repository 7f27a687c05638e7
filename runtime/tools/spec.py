"""A chat request's functions and the choice among them, as plain values (from ChatMessages)."""

import json
from dataclasses import dataclass

from shoal.runtime.errors import InvalidRequestError

AUTO, NONE, REQUIRED, NAMED = "auto", "none", "required", "named"


@dataclass(frozen=True)
class Tool:
    name: str
    description: str = ""
    parameters: dict | None = None  # JSON Schema of the arguments; None: any object

    def to_openai(self) -> dict:
        """The shape chat templates (and xgrammar) take: OpenAI's `{"type": "function", ...}`."""
        function = {"name": self.name, "description": self.description}
        if self.parameters is not None:
            function["parameters"] = self.parameters
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ToolChoice:
    """Which tools the model may call and how: `auto` (its output is parsed for calls), `none`
    (not parsed), `required` (one or more calls, forced) or `named` (one call of `name`, forced)."""

    tools: tuple[Tool, ...]
    mode: str = AUTO
    name: str = ""
    parallel: bool = True

    def __post_init__(self) -> None:
        if self.mode in (REQUIRED, NAMED) and not self.tools:
            raise InvalidRequestError("prompt.chat.tool_choice", f"{self.mode} needs tools")
        if self.mode == NAMED and self.name not in {t.name for t in self.tools}:
            raise InvalidRequestError("prompt.chat.tool_choice_name", f"no tool named {self.name!r}")

    @property
    def forced(self) -> bool:
        return self.mode in (REQUIRED, NAMED)

    @property
    def parsed(self) -> bool:
        return bool(self.tools) and self.mode != NONE

    def callable_tools(self) -> tuple[Tool, ...]:
        return tuple(t for t in self.tools if t.name == self.name) if self.mode == NAMED else self.tools


def parameters_from_json(field: str, text: str) -> dict | None:
    if not text:
        return None
    try:
        schema = json.loads(text)
    except ValueError as error:
        raise InvalidRequestError(field, f"is not JSON: {error}") from None
    if not isinstance(schema, dict):
        raise InvalidRequestError(field, "must be a JSON Schema object")
    return schema
