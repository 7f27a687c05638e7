"""Proto sampling fields: unset keeps the default, an explicit zero is honoured."""

import pytest

from shoal.runtime.errors import InvalidRequestError
from shoal.runtime.server.proto_mapping import checked_chat_messages, sampling_from_proto, tool_choice_from_proto
from shoal.runtime.tools.spec import AUTO, NAMED, Tool
from shoal.v1 import runtime_pb2 as pb


def test_unset_fields_keep_defaults():
    params = sampling_from_proto(pb.SamplingParams())
    assert (params.temperature, params.top_p, params.max_tokens, params.logprobs, params.skip_special_tokens) == (
        1.0,
        1.0,
        None,
        None,
        True,
    )


def test_explicit_zeros_are_not_mistaken_for_unset():
    params = sampling_from_proto(pb.SamplingParams(temperature=0.0, logprobs=0, skip_special_tokens=False))
    assert params.greedy and params.logprobs == 0 and params.skip_special_tokens is False


def test_lists_and_seed_map_through():
    params = sampling_from_proto(pb.SamplingParams(stop=["\n\n", "END"], stop_token_ids=[7], seed=-3, ignore_eos=True))
    assert params.stop == ("\n\n", "END") and params.stop_token_ids == (7,) and params.seed == -3 and params.ignore_eos


def test_chat_message_without_a_role_is_refused():
    with pytest.raises(InvalidRequestError, match=r"prompt.chat.messages\[1\].role"):
        checked_chat_messages(
            pb.ChatMessages(messages=[pb.ChatMessage(role="user", content="a"), pb.ChatMessage(content="b")])
        )


def test_tools_and_the_choice_map_to_a_tool_choice():
    assert tool_choice_from_proto(pb.ChatMessages()) is None  # a chat without tools
    choice = tool_choice_from_proto(
        pb.ChatMessages(
            tools=[pb.Tool(name="f", description="d", parameters='{"type": "object"}'), pb.Tool(name="g")],
            tool_choice=pb.TOOL_CHOICE_NAMED,
            tool_choice_name="g",
            parallel_tool_calls=False,
        )
    )
    assert choice.tools == (Tool("f", "d", {"type": "object"}), Tool("g"))
    assert (choice.mode, choice.name, choice.parallel, choice.forced) == (NAMED, "g", False, True)
    assert [t.name for t in choice.callable_tools()] == ["g"]
    default = tool_choice_from_proto(pb.ChatMessages(tools=[pb.Tool(name="f")]))
    assert (default.mode, default.parallel, default.forced, default.parsed) == (AUTO, True, False, True)


@pytest.mark.parametrize(
    ("chat", "field"),
    [
        (pb.ChatMessages(tools=[pb.Tool()]), r"prompt.chat.tools\[0\].name"),
        (pb.ChatMessages(tools=[pb.Tool(name="f", parameters="[1]")]), r"prompt.chat.tools\[0\].parameters"),
        (pb.ChatMessages(tool_choice=pb.TOOL_CHOICE_REQUIRED), "prompt.chat.tool_choice"),
        (pb.ChatMessages(tools=[pb.Tool(name="f")], tool_choice=99), "prompt.chat.tool_choice"),
        (
            pb.ChatMessages(tools=[pb.Tool(name="f")], tool_choice=pb.TOOL_CHOICE_NAMED, tool_choice_name="h"),
            "prompt.chat.tool_choice_name",
        ),
    ],
)
def test_bad_tools_are_refused_naming_the_field(chat, field):
    with pytest.raises(InvalidRequestError, match=field):
        tool_choice_from_proto(chat)
