"""The Responses API without a model: request bodies -> chat prompt, sampling and echo, every mistake a
400 naming the field as this API calls it; runtime messages -> the response object and the stream
events, both checked against the `openai` SDK's own types."""

import json

import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from shoal.router.errors import InvalidRequest, Overloaded, UpstreamFailure
from shoal.router.openai.responses import ResponseMeta
from shoal.router.openai.responses_api.events import ResponseBuilder
from shoal.router.openai.responses_api.objects import Echo
from shoal.router.openai.responses_api.parsing import field_name, parse_responses
from shoal.v1 import runtime_pb2 as pb

EVENT = pydantic.TypeAdapter(ResponseStreamEvent)
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def body(**params) -> dict:
    return {"model": "m", "input": "Hi", **params}


def tool(name: str = "get_weather", parameters=None, **fields) -> dict:
    return {"type": "function", "name": name, "parameters": WEATHER if parameters is None else parameters, **fields}


def turns(parsed) -> list[tuple]:
    return [
        (m.role, m.content, m.tool_call_id, [(c.id, c.name, c.arguments) for c in m.tool_calls])
        for m in parsed.prompt.chat.messages
    ]


def test_a_string_input_with_instructions_and_sampling():
    parsed = parse_responses(
        body(
            instructions="Be brief.",
            temperature=0.7,
            top_p=0.9,
            max_output_tokens=20,
            stream=True,
            stream_options={"include_obfuscation": False},
            user="u1",
            service_tier="flex",
            metadata={"k": "v"},
            store=True,
            truncation="disabled",
            parallel_tool_calls=False,
        )
    )
    assert turns(parsed) == [("system", "Be brief.", "", []), ("user", "Hi", "", [])]
    s = parsed.sampling
    assert (s.temperature, s.top_p, s.max_tokens) == (pytest.approx(0.7), pytest.approx(0.9), 20)
    assert not s.HasField("structured") and parsed.stream and parsed.runtime_n == 1
    assert (parsed.user, parsed.service_tier, parsed.priority) == ("u1", "flex", None)
    assert parsed.echo == Echo(
        instructions="Be brief.",
        max_output_tokens=20,
        temperature=0.7,
        top_p=0.9,
        parallel_tool_calls=False,
        metadata={"k": "v"},
        user="u1",
    )
    assert parsed.prompt.chat.parallel_tool_calls is False


def test_unset_parameters_stay_unset_for_the_runtime_defaults():
    parsed = parse_responses(body())
    assert not any(parsed.sampling.HasField(f) for f in ("temperature", "top_p", "max_tokens", "structured"))
    assert not parsed.prompt.chat.HasField("parallel_tool_calls") and parsed.echo == Echo()


def test_input_items_become_chat_turns_and_calls_join_the_assistant_turn():
    parsed = parse_responses(
        body(
            input=[
                {"role": "developer", "content": "Use tools."},
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "Weather in "},
                        {"type": "input_text", "text": "Paris?"},
                    ],
                },
                # a previous response's output, sent back as it came
                {
                    "id": "msg_1",
                    "type": "message",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "Checking.", "annotations": [], "logprobs": []}],
                },
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "c1",
                    "name": "get_weather",
                    "arguments": "{}",
                    "status": "completed",
                },
                {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": '{"city": "Rome"}'},
                {"type": "function_call_output", "call_id": "c1", "output": "21 C"},
                {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "25 C"}]},
                {"type": "function_call", "call_id": "c3", "name": "get_weather", "arguments": "{}"},
            ],
            tools=[tool()],
        )
    )
    assert turns(parsed) == [
        ("system", "Use tools.", "", []),
        ("user", "Weather in Paris?", "", []),
        ("assistant", "Checking.", "", [("c1", "get_weather", "{}"), ("c2", "get_weather", '{"city": "Rome"}')]),
        ("tool", "21 C", "c1", []),
        ("tool", "25 C", "c2", []),
        ("assistant", "", "", [("c3", "get_weather", "{}")]),
    ]


def test_tools_choices_and_text_formats():
    parsed = parse_responses(
        body(tools=[tool(description="Weather now.")], tool_choice={"type": "function", "name": "get_weather"})
    )
    chat = parsed.prompt.chat
    assert (chat.tool_choice, chat.tool_choice_name) == (pb.TOOL_CHOICE_NAMED, "get_weather")
    assert (chat.tools[0].name, chat.tools[0].description, json.loads(chat.tools[0].parameters)) == (
        "get_weather",
        "Weather now.",
        WEATHER,
    )
    assert parsed.echo.tools == (
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather now.",
            "parameters": WEATHER,
        },
    )
    assert parsed.echo.tool_choice == {"type": "function", "name": "get_weather"}
    assert (
        parse_responses(body(tools=[tool()], tool_choice="required")).prompt.chat.tool_choice == pb.TOOL_CHOICE_REQUIRED
    )
    json_object = parse_responses(body(text={"format": {"type": "json_object"}}))
    assert json_object.sampling.structured.json_object and json_object.echo.text_format == {"type": "json_object"}
    schema = {"type": "json_schema", "name": "person", "schema": WEATHER, "strict": True}
    parsed = parse_responses(body(text={"format": schema}))
    assert json.loads(parsed.sampling.structured.json_schema) == WEATHER and parsed.echo.text_format == schema
    assert not parse_responses(body(text={"format": {"type": "text"}})).sampling.HasField("structured")


@pytest.mark.parametrize(
    ("request_body", "param", "message"),
    [
        ({"input": "Hi"}, "model", "Missing required parameter"),
        (body(previous_response_id="resp_1"), "previous_response_id", "does not store responses"),
        (body(conversation="conv_1"), "conversation", "send the whole conversation in 'input'"),
        (body(reasoning={"effort": "low"}), "reasoning", "Unrecognized request argument"),
        (body(include=["reasoning.encrypted_content"]), "include", "Unrecognized request argument"),
        (body(background=True), "background", "Unrecognized request argument"),
        (body(max_tokens=5), "max_tokens", "Unrecognized request argument"),
        (body(truncation="auto"), "truncation", "only 'disabled'"),
        ({"model": "m"}, "input", "Missing required parameter"),
        (body(input=[]), "input", "non-empty array"),
        (body(input=5), "input", "a string or a non-empty array"),
        (body(input=["hi"]), "input[0]", "expected an object"),
        (body(input=[{"role": "tool", "content": "x"}]), "input[0].role", "expected one of user"),
        (body(input=[{"type": "reasoning", "summary": []}]), "input[0].type", "expected one of message"),
        (body(input=[{"role": "user"}]), "input[0].content", "Missing required parameter"),
        (
            body(input=[{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]),
            "input[0].content[0].type",
            "Only text parts",
        ),
        (body(input=[{"role": "user", "content": "x", "name": "ann"}]), "input[0].name", "Unrecognized"),
        (body(input=[{"role": "user", "content": "\ud800"}]), "input[0].content", "lone surrogate"),
        (body(input=[{"type": "function_call", "name": "f", "arguments": "{}"}]), "input[0].call_id", "Missing"),
        (
            body(
                input=[
                    {"role": "user", "content": "x"},
                    {"type": "function_call", "call_id": "c", "name": "a b", "arguments": "{}"},
                ]
            ),
            "input[1].name",
            "not a function name",
        ),
        (body(input=[{"type": "function_call_output", "call_id": "c"}]), "input[0].output", "Missing"),
        (body(instructions=5), "instructions", "expected a string"),
        (body(max_output_tokens=0), "max_output_tokens", "less than the minimum of 1"),
        (body(max_output_tokens="10"), "max_output_tokens", "expected an integer"),
        (body(temperature=3), "temperature", "greater than the maximum of 2"),
        (body(top_p=0), "top_p", "less than or equal to the minimum of 0"),
        (body(stream_options={"include_obfuscation": True}), "stream_options", "only allowed when 'stream' is true"),
        (body(tools={}), "tools", "expected an array"),
        (body(tools=[{"type": "web_search"}]), "tools[0].type", "Only function tools"),
        (body(tools=[{"type": "function", "function": {"name": "f"}}]), "tools[0].name", "Missing required parameter"),
        (body(tools=[tool("get weather")]), "tools[0].name", "not a function name"),
        (body(tools=[tool(), tool()]), "tools[1].name", "given twice"),
        (body(tools=[tool(parameters={"type": 5})]), "tools[0].parameters", "Invalid JSON schema"),
        (body(tools=[tool(parameters=[1])]), "tools[0].parameters", "expected a JSON Schema object"),
        (body(tools=[tool()], tool_choice="sometimes"), "tool_choice", "expected one of auto, none, required"),
        (body(tools=[tool()], tool_choice={"type": "function", "name": "g"}), "tool_choice", "no function named 'g'"),
        (body(tools=[tool()], tool_choice={"type": "file_search"}), "tool_choice.type", "Only a function"),
        (body(tool_choice="required"), "tool_choice", "'tools' is empty"),
        (body(text="json"), "text", "expected an object"),
        (body(text={"format": {"type": "xml"}}), "text.format.type", "expected one of text, json_object"),
        (
            body(text={"format": {"type": "json_schema", "name": "no spaces", "schema": {}}}),
            "text.format.name",
            "1 to 64",
        ),
        (
            body(text={"format": {"type": "json_schema", "name": "p", "schema": []}}),
            "text.format.schema",
            "expected an object",
        ),
        (
            body(text={"format": {"type": "json_schema", "name": "p", "schema": {"type": "objec"}}}),
            "text.format.schema",
            "Invalid JSON schema",
        ),
        (body(text={"format": {"type": "json_object", "schema": {}}}), "text.format.schema", "Unrecognized"),
        (body(text={"verbosity": "low"}), "text.verbosity", "Unrecognized"),
        (body(metadata={"k": 1}), "metadata", "an object of strings"),
        (body(metadata={str(i): "v" for i in range(17)}), "metadata", "at most 16"),
        (body(service_tier=3), "service_tier", "expected a string"),
    ],
)
def test_mistakes_are_400s_naming_the_field(request_body, param, message):
    with pytest.raises(InvalidRequest) as caught:
        parse_responses(request_body)
    assert caught.value.param == param and message in caught.value.message, caught.value.message


def test_a_forced_call_and_a_text_format_together_are_refused():
    with pytest.raises(InvalidRequest) as caught:
        parse_responses(body(tools=[tool()], tool_choice="required", text={"format": {"type": "json_object"}}))
    assert caught.value.param == "tool_choice"


def test_runtime_field_names_in_this_apis_terms():
    assert [field_name(f) for f in ("prompt", "max_tokens", "structured.json_schema", "structured.regex", "top_p")] == [
        "input",
        "max_output_tokens",
        "text.format.schema",
        "text.format",
        "top_p",
    ]


# -- the response and its events --

META = ResponseMeta("resp_abc", "m", "r1", "default", created=1700000000)
PLAIN = Echo()


def message(
    text: str = "", finish=pb.FINISH_REASON_UNSPECIFIED, calls=(), prompt=7, completion=3
) -> pb.GenerateResponse:
    final = finish != pb.FINISH_REASON_UNSPECIFIED
    usage = pb.Usage(prompt_tokens=prompt, completion_tokens=completion, cached_prompt_tokens=2) if final else None
    return pb.GenerateResponse(text=text, finish_reason=finish, usage=usage, tool_calls=list(calls))


def build(messages: list[pb.GenerateResponse], echo: Echo = PLAIN) -> tuple[list[dict], dict]:
    """The stream's events and the whole response, each checked against the SDK's types."""
    builder = ResponseBuilder(META, echo)
    events = builder.start()
    for m in messages:
        events += builder.add(m)
    events += builder.finish(messages[-1])
    for event in events:
        EVENT.validate_python(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    response = builder.response()
    assert events[-1]["response"] == response
    return events, response


def test_text_answer_events_and_response():
    events, response = build([message("The capital "), message("is Paris."), message("", pb.FINISH_REASON_STOP)])
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
    assert [e["delta"] for e in events if e["type"] == "response.output_text.delta"] == ["The capital ", "is Paris."]
    parsed = Response.model_validate(response)
    assert parsed.output_text == "The capital is Paris." and parsed.status == "completed"
    assert parsed.id == "resp_abc" and parsed.output[0].id.startswith("msg_") and parsed.output[0].status == "completed"
    usage = response["usage"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (7, 3, 10)
    assert usage["input_tokens_details"]["cached_tokens"] == 2 and response["incomplete_details"] is None
    assert response["text"] == {"format": {"type": "text"}} and response["temperature"] == 1.0


def test_cut_short_by_max_output_tokens_is_incomplete():
    events, response = build([message("Par"), message("is", pb.FINISH_REASON_LENGTH)], Echo(max_output_tokens=2))
    assert events[-1]["type"] == "response.incomplete" and response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"} and response["max_output_tokens"] == 2
    assert response["output"][0]["status"] == "incomplete" and response["output"][0]["content"][0]["text"] == "Paris"


def test_function_calls_are_items_after_the_text():
    first = pb.ToolCallDelta(index=0, id="call_1", name="get_weather", arguments='{"city": ')
    events, response = build(
        [
            message("Let me check."),
            message(calls=[first]),
            message(calls=[pb.ToolCallDelta(index=0, arguments='"Paris"}')]),
            message(calls=[pb.ToolCallDelta(index=1, id="call_2", name="get_time", arguments="{}")]),
            message("", pb.FINISH_REASON_TOOL_CALLS),
        ]
    )
    output = Response.model_validate(response).output
    assert [item.type for item in output] == ["message", "function_call", "function_call"]
    assert (output[1].call_id, output[1].name, json.loads(output[1].arguments)) == (
        "call_1",
        "get_weather",
        {"city": "Paris"},
    )
    assert (output[2].call_id, output[2].name, output[2].arguments) == ("call_2", "get_time", "{}")
    assert output[1].id.startswith("fc_") and len({item.id for item in output}) == 3
    assert response["status"] == "completed" and all(item.status == "completed" for item in output)
    deltas = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert deltas == ['{"city": ', '"Paris"}', "{}"]
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [(e["output_index"], e["arguments"]) for e in done] == [(1, '{"city": "Paris"}'), (2, "{}")]
    added = [e["item"] for e in events if e["type"] == "response.output_item.added"]
    assert [a["type"] for a in added] == ["message", "function_call", "function_call"] and added[1]["arguments"] == ""


def test_only_a_call_has_no_message_item_and_nothing_is_an_empty_message():
    call = pb.ToolCallDelta(index=0, id="call_1", name="f", arguments="{}")
    _, response = build([message(calls=[call]), message("", pb.FINISH_REASON_TOOL_CALLS)])
    assert [item["type"] for item in response["output"]] == ["function_call"]
    _, response = build([message("", pb.FINISH_REASON_STOP)])
    assert Response.model_validate(response).output_text == "" and response["output"][0]["type"] == "message"


@pytest.mark.parametrize(
    ("error", "code"), [(UpstreamFailure("boom"), "server_error"), (Overloaded("busy", 1), "rate_limit_exceeded")]
)
def test_a_failure_midway_is_an_error_event_then_failed(error, code):
    builder = ResponseBuilder(META, Echo())
    events = builder.start() + builder.add(message("Par")) + builder.fail(error)
    for event in events:
        EVENT.validate_python(event)
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-2]["message"] == error.message and events[-2]["sequence_number"] == len(events) - 2
    failed = Response.model_validate(events[-1]["response"])
    assert failed.status == "failed" and failed.error.code == code and failed.output[0].status == "incomplete"
