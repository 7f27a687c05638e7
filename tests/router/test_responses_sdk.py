"""OpenAI's Responses API through `shoal router`, driven by the official `openai` SDK: in front of a
real runtime on the embedded model, `instructions` + `input` answer as chat completions do for the
same messages (greedy: the same text), streamed as events whose deltas make the same text; a
json_schema `text.format` is followed; `max_output_tokens` makes it incomplete; a named function
gives a `function_call` item matching its schema, and its output goes back as an input item. In
front of a fake runtime: a failure midway is an `error` event then `response.failed`, and what the
runtime refuses is named as this API names it."""

import json

import grpc
import jsonschema
import openai
import pytest

from tests.router.conftest import MODEL
from tests.router.harness import RouterInThread, make_config, pool
from tests.runtime.test_tool_calls import SCHEMAS, TIME, WEATHER

pytestmark = pytest.mark.integration
QUESTION = "What is the capital of France?"
INSTRUCTIONS = "You are a helpful assistant. Answer in one sentence."
TOOLS = [
    {"type": "function", "name": "get_weather", "description": "Current weather", "parameters": WEATHER},
    {"type": "function", "name": "get_time", "description": "Current time", "parameters": TIME},
]
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def test_the_answer_is_chats_for_the_same_messages(sdk_client):
    response = sdk_client.responses.create(
        model=MODEL, input=QUESTION, instructions=INSTRUCTIONS, max_output_tokens=32, temperature=0
    )
    chat = sdk_client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": QUESTION}],
        max_tokens=32,
        temperature=0,
    )
    assert "Paris" in response.output_text and response.output_text == chat.choices[0].message.content
    assert response.status == "completed" and response.id.startswith("resp_") and response.model == MODEL
    (item,) = response.output
    assert item.type == "message" and item.role == "assistant" and item.id.startswith("msg_")
    assert response.usage.input_tokens == chat.usage.prompt_tokens
    assert response.usage.output_tokens == chat.usage.completion_tokens
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert (response.instructions, response.max_output_tokens, response.temperature) == (INSTRUCTIONS, 32, 0)


def test_streamed_deltas_make_the_same_text(sdk_client):
    asked = {"model": MODEL, "input": QUESTION, "instructions": INSTRUCTIONS, "max_output_tokens": 32, "temperature": 0}
    whole = sdk_client.responses.create(**asked)
    events = list(sdk_client.responses.create(**asked, stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events[:4]] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == whole.output_text
    assert events[-1].type == "response.completed" and events[-1].response.output_text == whole.output_text
    assert events[-1].response.usage.output_tokens == whole.usage.output_tokens


def test_headers_are_chats(stable_router):
    noisy = openai.OpenAI(base_url=stable_router.base_url + "/v1", api_key="sk-test-noisy", max_retries=0)
    raw = noisy.responses.with_raw_response.create(model=MODEL, input=QUESTION, max_output_tokens=4)
    response = raw.parse()
    assert raw.headers["x-request-id"] in response.id and raw.headers["x-shoal-revision"] == "r1"
    assert raw.headers["x-ratelimit-limit-requests"] == "2"  # the noisy tenant's


def test_a_json_schema_format_is_followed(sdk_client):
    response = sdk_client.responses.create(
        model=MODEL,
        input="Describe a person as JSON.",
        max_output_tokens=80,
        temperature=0,
        text={"format": {"type": "json_schema", "name": "person", "schema": PERSON, "strict": True}},
    )
    assert response.status == "completed", response.output_text
    jsonschema.validate(json.loads(response.output_text), PERSON)
    assert response.text.format.type == "json_schema" and response.text.format.name == "person"


def test_max_output_tokens_makes_it_incomplete(sdk_client):
    response = sdk_client.responses.create(model=MODEL, input=QUESTION, max_output_tokens=3, temperature=0)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == 3 and response.output_text
    events = list(sdk_client.responses.create(model=MODEL, input=QUESTION, max_output_tokens=3, stream=True))
    assert events[-1].type == "response.incomplete"


def test_nothing_is_stored(sdk_client):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk_client.responses.create(model=MODEL, input=QUESTION, previous_response_id="resp_123")
    assert caught.value.param == "previous_response_id" and "does not store" in caught.value.message


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"reasoning": {"effort": "low"}}, "reasoning"),
        ({"tools": [{"type": "function", "name": "a b"}]}, "tools[0].name"),
        ({"text": {"format": {"type": "json_schema", "name": "p", "schema": {"type": "objec"}}}}, "text.format.schema"),
        ({"max_output_tokens": 100_000}, "max_output_tokens"),  # refused by the runtime: past its context
    ],
)
def test_mistakes_are_400s_in_this_apis_terms(sdk_client, kwargs, param):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk_client.responses.create(model=MODEL, input=QUESTION, **kwargs)
    assert caught.value.param == param, caught.value.message


def test_a_named_function_gives_a_call_whose_output_goes_back(sdk_client):
    asked = {"model": MODEL, "tools": TOOLS, "temperature": 0, "max_output_tokens": 80}
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    response = sdk_client.responses.create(
        **asked, input=question, tool_choice={"type": "function", "name": "get_weather"}
    )
    calls = [item for item in response.output if item.type == "function_call"]
    assert calls and response.status == "completed", response.output
    call = calls[0]
    assert call.name == "get_weather" and call.id.startswith("fc_") and call.call_id and call.status == "completed"
    jsonschema.validate(json.loads(call.arguments), SCHEMAS["get_weather"])
    events = list(
        sdk_client.responses.create(
            **asked, input=question, tool_choice={"type": "function", "name": "get_weather"}, stream=True
        )
    )
    done = [e.item for e in events if e.type == "response.output_item.done" and e.item.type == "function_call"]
    assert [(c.name, c.arguments) for c in done] == [(c.name, c.arguments) for c in calls]
    returned = [item.model_dump(exclude_none=True) for item in response.output]
    result = {"type": "function_call_output", "call_id": call.call_id, "output": "21 degrees and sunny"}
    answer = sdk_client.responses.create(**asked, input=[*question, *returned, result])
    assert answer.status in ("completed", "incomplete") and answer.output


# -- in front of a fake runtime --


@pytest.fixture
def fake_client(loop_thread, start_fake):
    fake = start_fake(tokens=4, text="ab")
    router = RouterInThread(loop_thread, make_config([pool("fake", {"v1": [fake]}, model="fake-model")]))
    yield fake, openai.OpenAI(base_url=router.base_url + "/v1", api_key="sk-test-quiet", max_retries=0)
    router.stop()


def test_a_failure_midway_is_an_error_event_then_failed(fake_client):
    fake, client = fake_client
    fake.fail_after_tokens = 2
    events = list(client.responses.create(model="fake-model", input="Hi", max_output_tokens=10, stream=True))
    assert [e.type for e in events[-2:]] == ["error", "response.failed"]
    assert events[-1].response.status == "failed" and events[-1].response.error.code == "server_error"
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_what_the_runtime_refuses_is_named_as_this_api_does(fake_client):
    fake, client = fake_client
    fake.error, fake.error_message = grpc.StatusCode.INVALID_ARGUMENT, "prompt: longer than the context window"
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="fake-model", input="Hi")
    assert caught.value.param == "input"
    fake.error_message = "sampling.max_tokens: past the context window"
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="fake-model", input="Hi")
    assert caught.value.param == "max_output_tokens"
