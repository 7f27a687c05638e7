"""OpenAI's function calling fields of a chat request -> the runtime's ChatMessages fields.

`tools` (each `{"type": "function", "function": {"name", "description"?, "parameters"?, "strict"?}}`),
`tool_choice` (`"none"`, `"auto"`, `"required"` or `{"type": "function", "function": {"name"}}`),
`parallel_tool_calls`, and in the messages an assistant's `tool_calls` and a tool result's
`tool_call_id`. Here the shapes are checked; chat_prompt.checked_chat checks names, schemas and
that a named choice is among the tools, for every surface.
"""

import json
import re

from shoal.router.errors import InvalidRequest
from shoal.router.openai.fields import Body, prefixed
from shoal.v1 import runtime_pb2 as pb

CHOICES = {"auto": pb.TOOL_CHOICE_AUTO, "none": pb.TOOL_CHOICE_NONE, "required": pb.TOOL_CHOICE_REQUIRED}
# The runtime's field names under tools[i] and tool_calls[j] sit under `function.` in OpenAI's.
_FUNCTION_FIELD = re.compile(r"((?:tools|tool_calls)\[\d+\])\.(name|description|parameters|arguments)$")


def openai_field(field: str) -> str:
    """`tools[0].name` -> `tools[0].function.name`, and so on for tool calls; others unchanged."""
    return _FUNCTION_FIELD.sub(r"\1.function.\2", field)


def read_tools(body: Body, chat: pb.ChatMessages) -> None:
    """Fills chat's tools, tool_choice and parallel_tool_calls from the body."""
    tools = body.raw("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise InvalidRequest("tools", "Invalid type for 'tools': expected an array of tools.")
        for index, tool in enumerate(tools):
            with prefixed(f"tools[{index}]."):
                chat.tools.append(_tool(tool))
    choice = body.raw("tool_choice")
    if choice is not None:
        _read_choice(choice, chat)
    parallel = body.boolean("parallel_tool_calls", None)
    if parallel is not None:
        chat.parallel_tool_calls = parallel


def read_tool_calls(value) -> list[pb.ToolCall]:
    """An assistant message's `tool_calls`."""
    if not isinstance(value, list):
        raise InvalidRequest("tool_calls", "Invalid type for 'tool_calls': expected an array.")
    calls = []
    for index, item in enumerate(value):
        with prefixed(f"tool_calls[{index}]."):
            call = Body(item)
            call.string("type", "function", choices=("function",))
            call_id = call.string("id")
            function = _object(call, "function")
            with prefixed("function."):
                fields = Body(function)
                name = fields.string("name")
                arguments = fields.string("arguments")
                fields.done()
            call.done()
        calls.append(pb.ToolCall(id=call_id, name=name, arguments=arguments))
    return calls


def _tool(value) -> pb.Tool:
    tool = Body(value)
    tool.string("type", choices=("function",))
    function_value = _object(tool, "function")
    with prefixed("function."):
        function = Body(function_value)
        name = function.string("name")
        description = function.string("description", "")
        parameters = function.raw("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise InvalidRequest("parameters", "Invalid type for 'parameters': expected a JSON Schema object.")
        function.boolean("strict", None)  # the arguments always follow the schema where a grammar forces them
        function.done()
    tool.done()
    return pb.Tool(name=name, description=description, parameters=json.dumps(parameters) if parameters else "")


def _read_choice(value, chat: pb.ChatMessages) -> None:
    if isinstance(value, str):
        if value not in CHOICES:
            raise InvalidRequest(
                "tool_choice",
                f"Invalid value for 'tool_choice': expected one of {', '.join(CHOICES)} or a function, got {value!r}.",
            )
        chat.tool_choice = CHOICES[value]
        return
    with prefixed("tool_choice."):
        choice = Body(value)
        choice.string("type", choices=("function",))
        function_value = _object(choice, "function")
        with prefixed("function."):
            function = Body(function_value)
            name = function.string("name")
            function.done()
        choice.done()
    chat.tool_choice = pb.TOOL_CHOICE_NAMED
    chat.tool_choice_name = name


def _object(body: Body, name: str) -> dict:
    value = body.raw(name)
    if value is None:
        raise InvalidRequest(name, f"Missing required parameter: '{name}'.")
    if not isinstance(value, dict):
        raise InvalidRequest(name, f"Invalid type for '{name}': expected an object.")
    return value
