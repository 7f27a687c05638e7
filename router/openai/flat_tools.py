"""Function tools in the flat shape of the Responses and Realtime APIs -> the runtime's Tool and
tool choice, and back as those APIs repeat them.

`tools`: `[{"type": "function", "name", "description"?, "parameters"?, "strict"?}]` (Chat
Completions nests these under `function`: tools.py); `tool_choice`: "auto", "none", "required" or
`{"type": "function", "name"}`. Only function tools: the hosted ones (web search, file search, ...)
are OpenAI's services. The shapes are read here; names, schemas and a named choice's presence among
the tools get the checks of every surface's chat prompt (chat_prompt.checked_chat).
"""

import json

from shoal.router.errors import InvalidRequest
from shoal.router.openai.fields import Body, prefixed
from shoal.router.openai.tools import CHOICES
from shoal.v1 import runtime_pb2 as pb


def read_flat_tools(value: object) -> tuple[pb.Tool, ...]:
    if not isinstance(value, list):
        raise InvalidRequest("tools", "Invalid type for 'tools': expected an array of tools.")
    tools = []
    for index, tool in enumerate(value):
        if not isinstance(tool, dict):
            raise InvalidRequest(f"tools[{index}]", f"Invalid type for 'tools[{index}]': expected an object.")
        with prefixed(f"tools[{index}]."):
            tools.append(_tool(Body(tool)))
    return tuple(tools)


def read_flat_choice(value: object) -> tuple[int, str]:
    """(a pb.ToolChoice, the function's name for TOOL_CHOICE_NAMED else "")."""
    if isinstance(value, str) and value in CHOICES:
        return CHOICES[value], ""
    if not isinstance(value, dict):
        raise InvalidRequest(
            "tool_choice",
            f"Invalid value for 'tool_choice': expected one of {', '.join(CHOICES)} or a function, got {value!r}.",
        )
    with prefixed("tool_choice."):
        choice = Body(value)
        kind = choice.string("type")
        if kind != "function":
            raise InvalidRequest("type", f"Only a function can be chosen on this server, got {kind!r}.")
        name = choice.string("name")
        choice.done()
    return pb.TOOL_CHOICE_NAMED, name


def public_tools(tools: tuple[pb.Tool, ...]) -> list[dict]:
    return [
        {
            "type": "function",
            "name": tool.name,
            "description": tool.description,
            "parameters": json.loads(tool.parameters) if tool.parameters else {},
        }
        for tool in tools
    ]


def public_choice(choice: int, choice_name: str) -> str | dict:
    if choice == pb.TOOL_CHOICE_NAMED:
        return {"type": "function", "name": choice_name}
    return next(mode for mode, value in CHOICES.items() if value == choice)


def _tool(tool: Body) -> pb.Tool:
    kind = tool.string("type")
    if kind != "function":
        raise InvalidRequest("type", f"Only function tools are supported by this server, got {kind!r}.")
    name = tool.string("name")
    description = tool.string("description", "")
    parameters = tool.raw("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidRequest("parameters", "Invalid type for 'parameters': expected a JSON Schema object.")
    tool.boolean("strict", None)  # a forced call follows the schema whatever this says
    tool.done()
    return pb.Tool(name=name, description=description, parameters=json.dumps(parameters) if parameters else "")
