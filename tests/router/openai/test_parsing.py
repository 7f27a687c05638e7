"""OpenAI request bodies: parameters map to the runtime's sampling; every mistake is a 400 naming `param`."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.router.errors import InvalidRequest
from shoal.router.openai.parsing import parse_chat, parse_completion
from shoal.v1 import runtime_pb2 as pb
from tests.router import bad_values


def chat(**params) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": "Hi"}], **params}


def tool(name: str, parameters=None) -> dict:
    function = {"name": name} if parameters is None else {"name": name, "parameters": parameters}
    return {"type": "function", "function": function}


def named(name: str) -> dict:
    return {"type": "function", "function": {"name": name}}


CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
JSON_OBJECT = {"type": "json_object"}
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def test_tools_and_the_calls_and_results_in_messages_map_to_the_chat_prompt():
    parsed = parse_chat(
        chat(
            messages=[
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "21 C"},
            ],
            tools=[
                {"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": WEATHER}}
            ],
            tool_choice=named("get_weather"),
            parallel_tool_calls=False,
        )
    )
    chat_prompt = parsed.prompt.chat
    (tool_spec,) = chat_prompt.tools
    assert (tool_spec.name, tool_spec.description, json.loads(tool_spec.parameters)) == ("get_weather", "d", WEATHER)
    assert (chat_prompt.tool_choice, chat_prompt.tool_choice_name, chat_prompt.parallel_tool_calls) == (
        pb.TOOL_CHOICE_NAMED,
        "get_weather",
        False,
    )
    user, assistant, result = chat_prompt.messages
    assert (assistant.content, [(c.id, c.name, c.arguments) for c in assistant.tool_calls]) == (
        "",
        [("call_1", "get_weather", '{"city": "Paris"}')],
    )
    assert (result.role, result.tool_call_id, result.content) == ("tool", "call_1", "21 C")
    assert (
        parse_chat(chat(tools=[tool("f")], tool_choice="required")).prompt.chat.tool_choice == pb.TOOL_CHOICE_REQUIRED
    )
    assert not parse_chat(chat()).prompt.chat.HasField("parallel_tool_calls")  # the runtime's default: true


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
    turns = [(m.role, m.content, m.name) for m in parsed.prompt.chat.messages]
    assert turns == [("system", "Be brief.", ""), ("user", "Hello, you.", "ann"), ("assistant", "Hi.", "")]


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
            chat(messages=[{"role": "user", "content": "x", "tool_calls": [CALL]}]),
            "messages[0].tool_calls",
            "only assistant messages",
        ),
        (chat(messages=[{"role": "assistant", "tool_calls": [{"id": 1}]}]), "messages[0].tool_calls[0].id", "a string"),
        (
            chat(messages=[{"role": "assistant", "tool_calls": [{"id": "c1", "type": "function"}]}]),
            "messages[0].tool_calls[0].function",
            "Missing required parameter",
        ),
        (
            chat(messages=[{"role": "user", "content": "x"}, {"role": "tool", "content": "12"}]),
            "messages[1].tool_call_id",
            "Missing required parameter",
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
        (chat(tools=[{"type": "function"}]), "tools[0].function", "Missing required parameter"),
        (chat(tools=[{"type": "custom", "function": {"name": "f"}}]), "tools[0].type", "expected one of function"),
        (chat(tools=[{"type": "function", "function": {}}]), "tools[0].function.name", "Missing required parameter"),
        (chat(tools=[tool("get weather")]), "tools[0].function.name", "not a function name"),
        (chat(tools=[tool("f"), tool("f")]), "tools[1].function.name", "given twice"),
        (chat(tools=[tool("f", {"type": 5})]), "tools[0].function.parameters", "Invalid JSON schema"),
        (chat(tools=[tool("f", [1])]), "tools[0].function.parameters", "expected a JSON Schema object"),
        (chat(tools=[tool("f")], tool_choice="sometimes"), "tool_choice", "expected one of auto, none, required"),
        (chat(tools=[tool("f")], tool_choice=named("g")), "tool_choice", "no function named 'g'"),
        (chat(tool_choice="required"), "tool_choice", "'tools' is empty"),
        (chat(tools=[tool("f")], tool_choice=named("f"), response_format=JSON_OBJECT), "tool_choice", "cannot follow"),
        (chat(tools=[tool("f")], parallel_tool_calls="no"), "parallel_tool_calls", "expected a boolean"),
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


def test_best_of_asks_the_runtime_for_that_many_choices_with_their_logprobs():
    parsed = parse_completion({"model": "m", "prompt": "x", "best_of": 3, "n": 2})
    assert (parsed.n, parsed.best_of, parsed.runtime_n, parsed.sampling.logprobs, parsed.logprobs) == (
        2,
        3,
        3,
        0,
        False,
    )
    assert parsed.runtime_field("n") == "best_of" and parsed.runtime_field("prompt") == "prompt"
    plain = parse_completion({"model": "m", "prompt": "x", "n": 2})
    assert (plain.runtime_n, plain.runtime_field("n"), plain.sampling.HasField("logprobs")) == (2, "n", False)
    assert parse_chat(chat()).runtime_field("prompt") == "messages"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m"}, "prompt"),
        ({"model": "m", "prompt": ["a", "b"]}, "prompt"),
        ({"model": "m", "prompt": [1, -2]}, "prompt"),
        ({"model": "m", "prompt": {"text": "x"}}, "prompt"),
        ({"model": "m", "prompt": "x", "echo": True}, "echo"),
        ({"model": "m", "prompt": "x", "best_of": 0}, "best_of"),
        ({"model": "m", "prompt": "x", "best_of": 2, "n": 3}, "best_of"),
        ({"model": "m", "prompt": "x", "best_of": 2, "stream": True}, "best_of"),
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
