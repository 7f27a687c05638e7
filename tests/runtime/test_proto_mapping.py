"""Proto sampling fields: unset keeps the default, an explicit zero is honoured."""

import pytest

from shoal.runtime.errors import InvalidRequestError
from shoal.runtime.server.proto_mapping import chat_messages_from_proto, sampling_from_proto
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
        chat_messages_from_proto(
            pb.ChatMessages(messages=[pb.ChatMessage(role="user", content="a"), pb.ChatMessage(content="b")])
        )
