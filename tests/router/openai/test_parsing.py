"""OpenAI request bodies: parameters map to the runtime's sampling; every mistake is a 400 naming `param`."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.router.errors import InvalidRequest
from shoal.router.openai.parsing import parse_chat, parse_completion
from tests.router import bad_values


def chat(**params) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": "Hi"}], **params}


def test_chat_parameters_map_to_sampling():
    parsed = parse_chat(
        chat(
            temperature=0.5,
            top_p=0.9,
            max_completion_tokens=20,
            max_tokens=99,
            stop="END",
            seed=7,
            presence_penalty=0.5,
            frequency_penalty=-0.5,
            logprobs=True,
            top_logprobs=3,
            top_k=40,
            min_p=0.05,
            repetition_penalty=1.1,
            ignore_eos=True,
            stop_token_ids=[2],
            stream=True,
            stream_options={"include_usage": True},
            user="u1",
            service_tier="flex",
            logit_bias={},
            tools=[],
            response_format={"type": "text"},
            metadata={"a": "b"},
        )
    )
    s = parsed.sampling
    assert (s.temperature, s.top_p, s.max_tokens, list(s.stop), s.seed) == (0.5, pytest.approx(0.9), 20, ["END"], 7)
    assert (s.presence_penalty, s.frequency_penalty, s.logprobs, s.top_k, s.ignore_eos) == (0.5, -0.5, 3, 40, True)
    assert (
        list(s.stop_token_ids) == [2] and s.min_p == pytest.approx(0.05) and s.repetition_penalty == pytest.approx(1.1)
    )
    assert (
        parsed.stream
        and parsed.include_usage
        and parsed.logprobs
        and parsed.user == "u1"
        and parsed.service_tier == "flex"
    )


def test_unset_parameters_stay_unset_for_the_runtime_defaults():
    s = parse_chat(chat()).sampling
    assert not any(s.HasField(f) for f in ("temperature", "top_p", "max_tokens", "seed", "logprobs"))


def test_messages_content_parts_and_roles():
    parsed = parse_chat(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "you."}],
                    "name": "ann",
                },
                {"role": "assistant", "content": "Hi."},
            ],
        }
    )
    assert parsed.prompt.messages == (("system", "Be brief."), ("user", "Hello, you."), ("assistant", "Hi."))


def test_completion_prompts():
    assert parse_completion({"model": "m", "prompt": "Once"}).prompt.text == "Once"
    assert parse_completion({"model": "m", "prompt": ["Once"]}).prompt.text == "Once"
    assert parse_completion({"model": "m", "prompt": [1, 2, 3]}).prompt.token_ids == (1, 2, 3)
    assert parse_completion({"model": "m", "prompt": [[1, 2]]}).prompt.token_ids == (1, 2)
    assert parse_completion({"model": "m", "prompt": "x"}).sampling.max_tokens == 16  # OpenAI's default
    assert parse_completion({"model": "m", "prompt": "x", "logprobs": 2}).sampling.logprobs == 2


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ([], None, "must be a JSON object"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model", "Missing required parameter: 'model'"),
        ({"model": 3, "messages": []}, "model", "expected a string, but got a number"),
        (chat(messages="hi"), "messages", "non-empty array"),
        (chat(messages=[]), "messages", "non-empty array"),
        (chat(messages=["hi"]), "messages[0]", "expected an object"),
        (chat(messages=[{"role": "wizard", "content": "x"}]), "messages[0].role", "expected one of"),
        (chat(messages=[{"role": "user"}]), "messages[0].content", "Missing required parameter"),
        (
            chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
            "messages[0].content[0]",
            "Only text",
        ),
        (
            chat(messages=[{"role": "user", "content": "x", "tool_calls": [{"id": 1}]}]),
            "messages[0].tool_calls",
            "not supported",
        ),
        (chat(temperature="hot"), "temperature", "expected a number, but got a string"),
        (chat(temperature=2.5), "temperature", "greater than the maximum of 2"),
        (chat(temperature=True), "temperature", "expected a number, but got a boolean"),
        (chat(top_p=0), "top_p", "less than or equal to the minimum of 0"),
        (chat(max_tokens=1.5), "max_tokens", "expected an integer"),
        (chat(max_tokens=0), "max_tokens", "less than the minimum of 1"),
        (chat(n=0), "n", "less than the minimum of 1"),
        (chat(n=2**31), "n", "greater than the maximum"),
        (chat(stop=["a", "b", "c", "d", "e"]), "stop", "at most 4"),
        (chat(stop=[1]), "stop", "a string or an array of strings"),
        (chat(stream="yes"), "stream", "expected a boolean"),
        (chat(stream_options={"include_usage": True}), "stream_options", "only allowed when 'stream' is true"),
        (chat(stream=True, stream_options={"usage": True}), "stream_options.usage", "Unrecognized"),
        (chat(top_logprobs=2), "top_logprobs", "requires 'logprobs'"),
        (chat(logprobs=True, top_logprobs=21), "top_logprobs", "greater than the maximum of 20"),
        (chat(tools=[{"type": "function"}]), "tools", "not supported"),
        (chat(logit_bias={"50256": -100}), "logit_bias", "not supported"),
        (chat(response_format={"type": "json_object", "x": 1}), "response_format.type", "expected one of"),
        (chat(response_format={"type": "json_schema"}), "response_format.json_schema", "Missing required"),
        (
            chat(response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": {}, "x": 1}}),
            "response_format.json_schema.x",
            "Unrecognized request argument",
        ),
        (
            chat(response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": 5}}}),
            "structured.json_schema",
            "Invalid JSON schema",
        ),
        (chat(structured_outputs={"xml": "<a/>"}), "structured_outputs.xml", "Unknown constraint"),
        (chat(structured_outputs={"json": "{not json"}), "structured_outputs.json", "not JSON"),
        (chat(structured_outputs={"json_object": False}), "structured_outputs", "exactly one"),
        (chat(structured_outputs={"regex": "\ud800"}), "structured_outputs.regex", "not valid Unicode"),
        (chat(structured_outputs={"choice": ["a", "\udfff"]}), "structured_outputs.choice", "not valid Unicode"),
        (
            chat(response_format={"type": "json_object"}, structured_outputs={"regex": "a"}),
            "structured_outputs",
            "not both",
        ),
        (chat(frobnicate=1), "frobnicate", "Unrecognized request argument supplied: frobnicate"),
        (chat(stop_token_ids=[-1]), "stop_token_ids", "less than the minimum of 0"),
    ],
)
def test_chat_mistakes_are_400s_naming_the_param(body, param, message):
    with pytest.raises(InvalidRequest) as error:
        parse_chat(body)
    assert error.value.param == param and message in error.value.message
    assert error.value.http_status == 400 and error.value.body()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m"}, "prompt"),
        ({"model": "m", "prompt": ["a", "b"]}, "prompt"),
        ({"model": "m", "prompt": [1, -2]}, "prompt"),
        ({"model": "m", "prompt": {"text": "x"}}, "prompt"),
        ({"model": "m", "prompt": "x", "echo": True}, "echo"),
        ({"model": "m", "prompt": "x", "best_of": 3}, "best_of"),
        ({"model": "m", "prompt": "x", "suffix": "end"}, "suffix"),
        ({"model": "m", "prompt": "x", "messages": []}, "messages"),
    ],
)
def test_completion_mistakes_name_the_param(body, param):
    with pytest.raises(InvalidRequest) as error:
        parse_completion(body)
    assert error.value.param == param


def through_json(body: dict) -> object:
    """What the server reads: JSON keeps NaN, infinities and lone surrogates ("\\ud800")."""
    return json.loads(json.dumps(body))


@settings(max_examples=100, deadline=None)
@given(data=st.data(), field=st.sampled_from(sorted(bad_values.CHAT)))
def test_a_bad_value_in_any_chat_field_is_a_400_naming_it(data, field):
    value = data.draw(bad_values.CHAT[field], label=field)
    body = {**chat(), field: value}
    if field == "top_logprobs":
        body["logprobs"] = True
    with pytest.raises(InvalidRequest) as error:
        parse_chat(through_json(body))
    assert error.value.param == field and error.value.http_status == 400


@settings(max_examples=100, deadline=None)
@given(data=st.data(), field=st.sampled_from(sorted(bad_values.COMPLETIONS)))
def test_a_bad_value_in_any_completions_field_is_a_400_naming_it(data, field):
    value = data.draw(bad_values.COMPLETIONS[field], label=field)
    with pytest.raises(InvalidRequest) as error:
        parse_completion(through_json({"model": "m", "prompt": "x", field: value}))
    assert error.value.param == field


@settings(max_examples=100, deadline=None)
@given(bad=bad_values.MESSAGES)
def test_bad_messages_are_400s_naming_the_message_and_field(bad):
    messages, param = bad
    with pytest.raises(InvalidRequest) as error:
        parse_chat(through_json(chat(messages=messages)))
    assert error.value.param == param


@settings(max_examples=100, deadline=None)
@given(prompt=bad_values.PROMPTS)
def test_bad_completion_prompts_are_400s(prompt):
    with pytest.raises(InvalidRequest) as error:
        parse_completion(through_json({"model": "m", "prompt": prompt}))
    assert error.value.param == "prompt"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat(max_tokens=2**31), "max_tokens"),
        (chat(max_completion_tokens=2**31), "max_completion_tokens"),
        (chat(max_completion_tokens=2**31, max_tokens=5), "max_completion_tokens"),
        (chat(top_k=2**31), "top_k"),
        (chat(stop_token_ids=[2, 2**31]), "stop_token_ids"),
        (chat(seed=2**63), "seed"),
        (chat(repetition_penalty=1e39), "repetition_penalty"),  # over float32: the runtime would read inf
        (chat(temperature=10**400), "temperature"),
        (chat(stop="\ud800"), "stop"),
        (chat(messages=[{"role": "user", "content": "a\udc80"}]), "messages[0].content"),
    ],
)
def test_values_the_runtime_proto_cannot_hold_are_400s(body, param):
    with pytest.raises(InvalidRequest) as error:
        parse_chat(through_json(body))
    assert error.value.param == param


def test_the_largest_values_the_runtime_holds_are_accepted():
    s = parse_chat(chat(max_tokens=2**31 - 1, top_k=2**31 - 1, stop_token_ids=[2**31 - 1], seed=-(2**63))).sampling
    assert (s.max_tokens, s.top_k, list(s.stop_token_ids), s.seed) == (2**31 - 1, 2**31 - 1, [2**31 - 1], -(2**63))
    assert parse_completion({"model": "m", "prompt": [0, 2**31 - 1]}).prompt.token_ids == (0, 2**31 - 1)
