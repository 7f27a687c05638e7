"""Chat requests for this model: messages and tools rendered with its chat template, a forced tool
choice turned into the grammar its output must follow, and the function calls parsed out of each
choice's text as it streams (in the syntax this model's family writes them)."""

from dataclasses import replace

from transformers import PreTrainedTokenizerBase

from shoal.runtime.errors import InvalidRequestError
from shoal.runtime.sampling.params import SamplingParams
from shoal.runtime.server.proto_mapping import checked_chat_messages, tool_choice_from_proto
from shoal.runtime.tokenization.tokenizer import encode_chat
from shoal.runtime.tools.constraint import forced_calls
from shoal.runtime.tools.family import template_renders_tools, tool_format_for
from shoal.runtime.tools.parser import CallDelta, ToolCallParser
from shoal.runtime.tools.rendering import template_input
from shoal.runtime.tools.spec import ToolChoice
from shoal.v1 import runtime_pb2 as pb


class ChatPrompts:
    def __init__(self, tokenizer: PreTrainedTokenizerBase | None, tool_call_parser: str):
        self.tokenizer = tokenizer
        template = tokenizer.chat_template if tokenizer is not None else None
        self.tool_format = tool_format_for(tool_call_parser, template)
        self.native_tools = template_renders_tools(template)

    def render(self, chat: pb.ChatMessages) -> tuple[list[int], ToolChoice | None]:
        """The prompt's token ids and the request's tool choice (None without tools); blocking."""
        choice = tool_choice_from_proto(chat)
        messages = checked_chat_messages(chat)
        rendered = template_input(messages, choice, self.tool_format, self.native_tools)
        return encode_chat(self.tokenizer, rendered), choice

    def constrained(self, sampling: SamplingParams, choice: ToolChoice | None) -> SamplingParams:
        """The sampling of a forced choice follows the calls' grammar."""
        if choice is None or not choice.forced:
            return sampling
        if sampling.structured is not None:
            raise InvalidRequestError("sampling.structured", "cannot be combined with a forced tool choice")
        return replace(sampling, structured=forced_calls(choice, self.tool_format))

    def tool_calls(self, choice: ToolChoice | None) -> "ToolCallsByChoice | None":
        return ToolCallsByChoice(self) if choice is not None and choice.parsed else None


class ToolCallsByChoice:
    """Moves the function calls in each choice's text into the response's tool_calls."""

    def __init__(self, prompts: ChatPrompts):
        self.prompts = prompts
        self.parsers: dict[int, ToolCallParser] = {}

    def apply(self, response: pb.GenerateResponse) -> None:
        parser = self.parsers.setdefault(response.index, ToolCallParser(self.prompts.tool_format))
        parsed = parser.feed(response.text)
        content, calls = parsed.content, list(parsed.calls)
        if response.finish_reason != pb.FINISH_REASON_UNSPECIFIED:
            rest = parser.finish()
            content, calls = content + rest.content, calls + list(rest.calls)
            if parser.num_calls and response.finish_reason == pb.FINISH_REASON_STOP:
                response.finish_reason = pb.FINISH_REASON_TOOL_CALLS
        response.text = content
        response.tool_calls.extend(
            pb.ToolCallDelta(index=c.index, id=c.id, name=c.name, arguments=c.arguments) for c in _merged(calls)
        )


def _merged(calls: list[CallDelta]) -> list[CallDelta]:
    """One delta per call: a message may hold several pieces of the same call."""
    merged: list[CallDelta] = []
    for call in calls:
        if merged and merged[-1].index == call.index:
            last = merged[-1]
            merged[-1] = CallDelta(
                last.index, last.id or call.id, last.name or call.name, last.arguments + call.arguments
            )
        else:
            merged.append(call)
    return merged
