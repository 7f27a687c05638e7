"""The checks of a chat prompt every surface runs (through request.validated): roles and text of the
messages, the function calls and results they carry, and the tools with the choice among them.

Text needs no check here: a protobuf string is valid UTF-8 (each surface checks its own text before
it builds one). Field names are the runtime's (`messages[1].tool_call_id`, `tools[0].parameters`, `tool_choice`);
each surface's `name` function says what its own API calls them.
"""

import re
from collections.abc import Callable

from shoal.router.errors import InvalidRequest
from shoal.router.schemas import check_json_schema
from shoal.v1 import runtime_pb2 as pb

CHAT_ROLES = ("system", "developer", "user", "assistant", "tool")
TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")  # OpenAI's rule for function names


def checked_chat(chat: pb.ChatMessages, name: Callable[[str], str]) -> pb.ChatMessages:
    """The chat prompt with `developer` turns as `system`, or InvalidRequest naming the field."""
    if not chat.messages:
        raise InvalidRequest(name("messages"), f"Invalid '{name('messages')}': expected a non-empty array of messages.")
    checked = pb.ChatMessages()
    checked.CopyFrom(chat)
    for index, message in enumerate(checked.messages):
        _check_message(message, f"messages[{index}]", name)
        if message.role == "developer":
            message.role = "system"
    check_tools(chat, name)
    return checked


def check_tools(chat: pb.ChatMessages, name: Callable[[str], str]) -> None:
    """The tools (names, schemas) and the choice among them; the messages are not looked at."""
    _check_tool_choice(chat, _check_tools(chat.tools, name), name)


def _check_message(message: pb.ChatMessage, path: str, name: Callable[[str], str]) -> None:
    if message.role not in CHAT_ROLES:
        role = name(f"{path}.role")
        raise InvalidRequest(
            role, f"Invalid value for '{role}': expected one of {', '.join(CHAT_ROLES)}, got {message.role!r}."
        )
    if message.role == "tool" and not message.tool_call_id:
        field = name(f"{path}.tool_call_id")
        raise InvalidRequest(field, f"Missing required parameter: '{field}'.")
    if message.tool_calls and message.role != "assistant":
        field = name(f"{path}.tool_calls")
        raise InvalidRequest(field, f"Invalid '{field}': only assistant messages carry tool calls.")
    for index, call in enumerate(message.tool_calls):
        call_path = f"{path}.tool_calls[{index}]"
        if not call.id:
            raise InvalidRequest(name(f"{call_path}.id"), f"Missing required parameter: '{name(call_path + '.id')}'.")
        if not TOOL_NAME.fullmatch(call.name):
            _bad_tool_name(name(f"{call_path}.name"), call.name)


def _check_tools(tools, name: Callable[[str], str]) -> set[str]:
    names: set[str] = set()
    for index, tool in enumerate(tools):
        path = f"tools[{index}]"
        if not TOOL_NAME.fullmatch(tool.name):
            _bad_tool_name(name(f"{path}.name"), tool.name)
        if tool.name in names:
            field = name(f"{path}.name")
            raise InvalidRequest(field, f"Invalid '{field}': the function name {tool.name!r} is given twice.")
        names.add(tool.name)
        if tool.parameters:
            check_json_schema(name(f"{path}.parameters"), tool.parameters)
    return names


def _check_tool_choice(chat: pb.ChatMessages, tool_names: set[str], name: Callable[[str], str]) -> None:
    field = name("tool_choice")
    if chat.tool_choice in (pb.TOOL_CHOICE_REQUIRED, pb.TOOL_CHOICE_NAMED) and not chat.tools:
        raise InvalidRequest(field, f"Invalid '{field}': a function must be called, but 'tools' is empty.")
    if chat.tool_choice == pb.TOOL_CHOICE_NAMED and chat.tool_choice_name not in tool_names:
        raise InvalidRequest(field, f"Invalid '{field}': no function named {chat.tool_choice_name!r} in 'tools'.")
    if chat.tool_choice != pb.TOOL_CHOICE_NAMED and chat.tool_choice_name:
        raise InvalidRequest(field, f"Invalid '{field}': a function name is only given with a named choice.")


def _bad_tool_name(field: str, value: str) -> None:
    raise InvalidRequest(
        field, f"Invalid '{field}': {value!r} is not a function name (1 to 64 letters, digits, '_' or '-')."
    )
