"""A chat request's messages and tools -> what the model's chat template takes.

A template written for tools (Qwen's, Llama 3.1's, Hermes') gets them through `tools=` and the
messages in transformers' shape: an assistant's `tool_calls` with their arguments as objects, a tool
result's `tool_call_id`. A template without a place for tools (SmolLM2's) would drop them silently,
so then the tools and the format to call them in go into the system message, the assistant's calls
are written back in that format, and tool results go in as user turns wrapped in
`<tool_response>`, as Hermes-style templates write them.
"""

import json
from dataclasses import dataclass

from shoal.runtime.tools.formats import ToolFormat
from shoal.runtime.tools.spec import ToolChoice
from shoal.v1 import runtime_pb2 as pb


@dataclass(frozen=True)
class ChatTemplateInput:
    messages: list[dict]
    tools: list[dict] | None  # for apply_chat_template(tools=...); None when there are none


def template_input(
    messages: list[pb.ChatMessage], choice: ToolChoice | None, tool_format: ToolFormat, native: bool
) -> ChatTemplateInput:
    """`native`: the template renders tools itself (its source uses `tools`)."""
    if native:
        tools = [t.to_openai() for t in choice.tools] if choice is not None and choice.tools else None
        return ChatTemplateInput([_native_message(m) for m in messages], tools)
    rendered = [_plain_message(m, tool_format) for m in messages]
    if choice is not None and choice.tools:
        rendered = _with_tools_system_message(rendered, choice, tool_format)
    return ChatTemplateInput(rendered, None)


def _native_message(message: pb.ChatMessage) -> dict:
    out: dict = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": _arguments_object(call.arguments)},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    if message.name:
        out["name"] = message.name
    return out


def _plain_message(message: pb.ChatMessage, tool_format: ToolFormat) -> dict:
    if message.role == "tool":
        return {"role": "user", "content": f"<tool_response>\n{message.content}\n</tool_response>"}
    content = message.content
    if message.tool_calls:
        calls = tool_format.separator.join(
            tool_format.begin(call.name) + call.arguments + tool_format.end for call in message.tool_calls
        )
        content = f"{content}\n{calls}" if content else calls
    return {"role": message.role, "content": content}


def _with_tools_system_message(messages: list[dict], choice: ToolChoice, tool_format: ToolFormat) -> list[dict]:
    signatures = "\n".join(json.dumps(t.to_openai(), ensure_ascii=False) for t in choice.tools)
    example = tool_format.begin("<function-name>") + "<arguments-json-object>" + tool_format.end
    instructions = (
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n"
        f"<tools>\n{signatures}\n</tools>\n\n"
        f"For each function call, return a json object with function name and arguments, exactly so:\n{example}"
    )
    if messages and messages[0]["role"] == "system":
        first = {**messages[0], "content": f"{messages[0]['content']}\n\n{instructions}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": instructions}, *messages]


def _arguments_object(arguments: str):
    """Templates write arguments with `| tojson`: an object, where the text is one."""
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments
