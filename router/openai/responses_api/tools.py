"""The Responses API's function calling fields (flat_tools.py reads their shapes) -> the runtime's
ChatMessages fields, and the `tools` and `tool_choice` the response repeats."""

from shoal.router.openai.fields import Body
from shoal.router.openai.flat_tools import public_choice, public_tools, read_flat_choice, read_flat_tools
from shoal.v1 import runtime_pb2 as pb


def read_tools(body: Body, chat: pb.ChatMessages) -> tuple[dict, ...]:
    """Fills chat's tools from the body; returns them as the response repeats them."""
    value = body.raw("tools")
    if value is None:
        return ()
    chat.tools.extend(read_flat_tools(value))
    return tuple(public_tools(tuple(chat.tools)))


def read_tool_choice(body: Body, chat: pb.ChatMessages) -> str | dict:
    """Sets chat's tool_choice and parallel_tool_calls; returns the choice as the response repeats it."""
    parallel = body.boolean("parallel_tool_calls", None)
    if parallel is not None:
        chat.parallel_tool_calls = parallel
    value = body.raw("tool_choice")
    if value is None:
        return "auto"
    chat.tool_choice, chat.tool_choice_name = read_flat_choice(value)
    return public_choice(chat.tool_choice, chat.tool_choice_name)
