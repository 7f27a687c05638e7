"""Function calling through `shoal router` in front of a real runtime on the embedded model, driven by
the official `openai` SDK: `tool_choice` required or a named function gives `tool_calls` whose
arguments parse and match the function's schema (checked with jsonschema), streamed the way OpenAI
streams them (id and name first, then argument fragments) and equal to the answer not streamed;
tool results go back in the messages; bad tools and choices are 400s naming the parameter, and
nothing leaks (the runtime's KV blocks all come back)."""

import json

import jsonschema
import openai
import pytest

from tests.router.conftest import MODEL
from tests.runtime.test_grpc_e2e import wait_until_idle
from tests.runtime.test_tool_calls import SCHEMAS, TIME, WEATHER

pytestmark = pytest.mark.integration
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "description": "Current time", "parameters": TIME}},
]
NAMED = {"type": "function", "function": {"name": "get_weather"}}


@pytest.mark.parametrize("tool_choice", ["required", NAMED], ids=["required", "named"])
def test_a_forced_choice_answers_with_calls_matching_the_schema(sdk_client, tool_choice):
    completion = sdk_client.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice=tool_choice, parallel_tool_calls=False, temperature=0
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    if tool_choice == NAMED:
        assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


def test_streamed_calls_come_as_id_and_name_then_argument_fragments(sdk_client):
    asked = {"model": MODEL, "messages": ASK, "tools": TOOLS, "tool_choice": NAMED, "temperature": 0}
    whole = sdk_client.chat.completions.create(**asked).choices[0].message.tool_calls[0]
    deltas = [
        (chunk.choices[0].delta, chunk.choices[0].finish_reason)
        for chunk in sdk_client.chat.completions.create(**asked, stream=True)
    ]
    pieces = [call for delta, _ in deltas for call in delta.tool_calls or ()]
    first, rest = pieces[0], pieces[1:]
    assert first.index == 0 and first.id.startswith("call_") and first.function.name == "get_weather"
    assert rest and all(p.id is None and p.function.name is None for p in rest)
    assert "".join(p.function.arguments or "" for p in pieces) == whole.function.arguments
    assert deltas[-1][1] == "tool_calls"


def test_tool_results_go_back_in_the_messages(sdk_client):
    first = sdk_client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, tool_choice=NAMED, temperature=0)
    call = first.choices[0].message.tool_calls[0]
    conversation = [
        *ASK,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "21 degrees and sunny"},
    ]
    answer = sdk_client.chat.completions.create(model=MODEL, messages=conversation, tools=TOOLS, max_tokens=30)
    assert answer.choices[0].message.content


def test_auto_answers_in_text_when_no_call_is_written(sdk_client):
    question = [{"role": "user", "content": "What is the capital of France?"}]
    completion = sdk_client.chat.completions.create(
        model=MODEL, messages=question, tools=TOOLS, temperature=0, max_tokens=24
    )
    assert "Paris" in completion.choices[0].message.content and not completion.choices[0].message.tool_calls


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"tools": [{"type": "function", "function": {"parameters": WEATHER}}]}, "tools[0].function.name"),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "get_stock"}}}, "tool_choice"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "objec"}}}]},
            "tools[0].function.parameters",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
    ],
)
def test_bad_tools_are_400s_naming_the_parameter(sdk_client, stable_runtime, kwargs, param):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk_client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=8, **kwargs)
    assert caught.value.param == param, caught.value.message
    stats = wait_until_idle(stable_runtime)
    assert stats.kv_blocks_free == stats.kv_blocks_total
