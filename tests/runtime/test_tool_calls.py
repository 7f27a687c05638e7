"""Function calling against a real `shoal runtime` process on the embedded model: a forced choice
(required, or a named function) gives calls whose arguments parse and match the function's schema
(checked with jsonschema, not by the grammar that made them), streamed as id and name first and
then argument fragments, with finish_reason TOOL_CALLS; `auto` leaves a plain answer as text; bad
tools and choices are INVALID_ARGUMENT naming the field; KV blocks all come back."""

import json

import grpc
import jsonschema
import pytest

from shoal.v1 import runtime_pb2 as pb
from tests.runtime.test_grpc_e2e import wait_until_idle

pytestmark = pytest.mark.integration

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 20}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
}
TIME = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"]}
SCHEMAS = {"get_weather": WEATHER, "get_time": TIME}
TOOLS = [
    pb.Tool(name="get_weather", description="Current weather in a city", parameters=json.dumps(WEATHER)),
    pb.Tool(name="get_time", description="Current time in a city", parameters=json.dumps(TIME)),
]


def ask(content: str, n: int = 1, max_tokens: int = 60, **chat) -> pb.GenerateRequest:
    return pb.GenerateRequest(
        chat=pb.ChatMessages(messages=[pb.ChatMessage(role="user", content=content)], tools=TOOLS, **chat),
        sampling=pb.SamplingParams(temperature=0, max_tokens=max_tokens),
        n=n,
    )


def calls_of(responses: list[pb.GenerateResponse], index: int = 0) -> list[tuple[str, str, str]]:
    """(id, name, arguments) per call of one choice, put together from the streamed pieces."""
    calls: dict[int, list[str]] = {}
    for response in responses:
        if response.index != index:
            continue
        for piece in response.tool_calls:
            if piece.index not in calls:
                assert piece.id.startswith("call_") and piece.name, "a call's first piece has its id and name"
                calls[piece.index] = [piece.id, piece.name, ""]
            else:
                assert not piece.id and not piece.name
            calls[piece.index][2] += piece.arguments
    return [tuple(calls[i]) for i in sorted(calls)]


def final_of(responses: list[pb.GenerateResponse], index: int = 0) -> pb.GenerateResponse:
    return [r for r in responses if r.index == index and r.finish_reason][-1]


def test_a_named_choice_calls_that_function_with_arguments_matching_its_schema(runtime_server):
    responses = list(
        runtime_server.stub().Generate(
            ask("What is the weather in Paris?", tool_choice=pb.TOOL_CHOICE_NAMED, tool_choice_name="get_time")
        )
    )
    ((call_id, name, arguments),) = calls_of(responses)
    assert name == "get_time"
    jsonschema.validate(json.loads(arguments), TIME)
    assert "".join(r.text for r in responses) == ""
    assert final_of(responses).finish_reason == pb.FINISH_REASON_TOOL_CALLS
    assert sum(len(r.tool_calls) > 0 for r in responses) > 2, "the arguments come in several pieces"
    assert wait_until_idle(runtime_server).kv_blocks_free == runtime_server.stats().kv_blocks_total


def test_required_without_parallel_calls_gives_exactly_one_valid_call(runtime_server):
    responses = list(
        runtime_server.stub().Generate(
            ask("What is the weather in Paris?", tool_choice=pb.TOOL_CHOICE_REQUIRED, parallel_tool_calls=False)
        )
    )
    ((_, name, arguments),) = calls_of(responses)
    jsonschema.validate(json.loads(arguments), SCHEMAS[name])
    assert final_of(responses).finish_reason == pb.FINISH_REASON_TOOL_CALLS


def test_required_with_parallel_calls_gives_valid_calls_each_with_its_own_id(runtime_server):
    responses = list(
        runtime_server.stub().Generate(
            ask("Weather and time in Paris?", max_tokens=120, tool_choice=pb.TOOL_CHOICE_REQUIRED)
        )
    )
    calls = calls_of(responses)
    final = final_of(responses)
    # A model that keeps calling may reach max_tokens inside its last call; the ones before are whole.
    complete = calls if final.finish_reason == pb.FINISH_REASON_TOOL_CALLS else calls[:-1]
    assert complete and len({call_id for call_id, _, _ in calls}) == len(calls)
    for _, name, arguments in complete:
        jsonschema.validate(json.loads(arguments), SCHEMAS[name])


def test_each_of_n_choices_gets_its_own_calls(runtime_server):
    request = ask("Weather in Rome?", n=2, tool_choice=pb.TOOL_CHOICE_NAMED, tool_choice_name="get_weather")
    responses = list(runtime_server.stub().Generate(request))
    (first,), (second,) = calls_of(responses, 0), calls_of(responses, 1)
    assert first[0] != second[0] and first[1] == second[1] == "get_weather"
    for _, _, arguments in (first, second):
        jsonschema.validate(json.loads(arguments), WEATHER)


def test_auto_leaves_a_plain_answer_as_text(runtime_server):
    responses = list(runtime_server.stub().Generate(ask("What is the capital of France?", max_tokens=24)))
    assert "Paris" in "".join(r.text for r in responses)
    assert calls_of(responses) == []
    assert final_of(responses).finish_reason in (pb.FINISH_REASON_STOP, pb.FINISH_REASON_LENGTH)


def test_a_conversation_with_a_call_and_its_result_is_answered(runtime_server):
    messages = [
        pb.ChatMessage(role="user", content="What is the weather in Paris?"),
        pb.ChatMessage(
            role="assistant",
            tool_calls=[pb.ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris", "unit": "celsius"}')],
        ),
        pb.ChatMessage(role="tool", tool_call_id="call_1", content="21 degrees and sunny"),
    ]
    request = pb.GenerateRequest(
        chat=pb.ChatMessages(messages=messages, tools=TOOLS, tool_choice=pb.TOOL_CHOICE_NONE),
        sampling=pb.SamplingParams(temperature=0, max_tokens=30),
    )
    responses = list(runtime_server.stub().Generate(request))
    assert "".join(r.text for r in responses).strip() and calls_of(responses) == []


@pytest.mark.parametrize(
    ("chat", "sampling", "field"),
    [
        ({"tool_choice": pb.TOOL_CHOICE_NAMED, "tool_choice_name": "get_stock"}, {}, "prompt.chat.tool_choice_name"),
        ({"tools": [pb.Tool(name="f", parameters="{not json")]}, {}, "prompt.chat.tools[0].parameters"),
        ({"tools": [pb.Tool(description="no name")]}, {}, "prompt.chat.tools[0].name"),
        (
            {"tool_choice": pb.TOOL_CHOICE_REQUIRED},
            {"structured": pb.StructuredOutput(json_object=True)},
            "sampling.structured",
        ),
    ],
)
def test_bad_tools_are_invalid_argument_naming_the_field(runtime_server, chat, sampling, field):
    chat.setdefault("tools", TOOLS)
    request = pb.GenerateRequest(
        chat=pb.ChatMessages(messages=[pb.ChatMessage(role="user", content="Hi")], **chat),
        sampling=pb.SamplingParams(max_tokens=4, **sampling),
    )
    with pytest.raises(grpc.RpcError) as error:
        list(runtime_server.stub().Generate(request))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith(field + ":"), error.value.details()
