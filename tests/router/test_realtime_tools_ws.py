"""Function calling over a real realtime WebSocket: the router in front of a fake runtime that calls
the first tool it is given (a runtime's streamed tool_calls), then answers once the call's output
is back. Tools set with session.update reach the runtime's chat prompt; the call comes as its
events, in order; the client's function_call_output goes back as a `tool` message with its call id.
"""

import asyncio
import json

import pytest
from openai.types.beta.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from shoal.v1 import runtime_pb2 as pb
from tests.router.fake_runtime import FakeRuntime
from tests.router.harness import RouterInThread, make_config, pool
from tests.router.realtime_clients import Client, connected

pytestmark = pytest.mark.integration
MODEL = "fake-model"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
SERVER_EVENT = TypeAdapter(RealtimeServerEvent)
ARGUMENTS = ['{"ci', 'ty": "Pa', 'ris"}']  # as a runtime streams them, cut anywhere


class CallingRuntime(FakeRuntime):
    """Calls the first tool while the last turn is the user's; answers in text otherwise."""

    def __init__(self):
        super().__init__()
        self.requests: list[pb.GenerateRequest] = []

    async def Generate(self, request: pb.GenerateRequest, context):
        self.requests.append(request)
        chat = request.chat
        usage = pb.Usage(prompt_tokens=12, completion_tokens=7)
        if chat.tools and chat.messages[-1].role == "user":
            name = chat.tools[0].name
            yield pb.GenerateResponse(tool_calls=[pb.ToolCallDelta(index=0, id="call_1", name=name)])
            for fragment in ARGUMENTS:
                yield pb.GenerateResponse(tool_calls=[pb.ToolCallDelta(index=0, arguments=fragment)])
            yield pb.GenerateResponse(finish_reason=pb.FINISH_REASON_TOOL_CALLS, usage=usage)
        else:
            yield pb.GenerateResponse(text="Sunny, ")
            yield pb.GenerateResponse(text="21 C.", finish_reason=pb.FINISH_REASON_STOP, usage=usage)


@pytest.fixture(scope="module")
def runtime(loop_thread):
    runtime = loop_thread.run(CallingRuntime().start())
    yield runtime
    loop_thread.run(runtime.stop())


@pytest.fixture(scope="module")
def router(loop_thread, runtime):
    router = RouterInThread(loop_thread, make_config([pool("fake", {"v1": [runtime]}, model=MODEL)]))
    yield router
    router.stop()


def test_a_function_call_and_its_output_go_round_the_session(router, runtime):
    async def body(client: Client):
        await client.send("session.update", session={"tools": [WEATHER], "tool_choice": "auto"})
        updated, _ = await client.until("session.updated", timeout_s=5)
        await client.say("What is the weather in Paris?")
        await client.until("conversation.item.created", timeout_s=5)
        await client.send("response.create")
        _, first = await client.until("response.done", timeout_s=5)
        call_id = first[-1]["response"]["output"][0]["call_id"]
        output = {"type": "function_call_output", "call_id": call_id, "output": '{"sky": "sunny", "temp_c": 21}'}
        await client.send("conversation.item.create", item=output)
        created, _ = await client.until("conversation.item.created", timeout_s=5)
        await client.send("response.create")
        _, second = await client.until("response.done", timeout_s=5)
        return updated, first, created, second

    updated, first, created, second = asyncio.run(connected(router.base_url, MODEL, body))
    assert updated["session"]["tools"] == [WEATHER] and updated["session"]["tool_choice"] == "auto"
    assert [e["type"] for e in first] == [
        "response.created",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.done",
    ]
    for event in first:  # as the OpenAI SDK's types have them
        SERVER_EVENT.validate_python(event)
    added, deltas, done = first[1], first[2:5], first[5]
    assert added["item"]["type"] == "function_call" and added["item"]["status"] == "in_progress"
    assert (added["item"]["call_id"], added["item"]["name"], added["item"]["arguments"]) == (
        "call_1",
        "get_weather",
        "",
    )
    assert [d["delta"] for d in deltas] == ARGUMENTS and all(d["call_id"] == "call_1" for d in deltas)
    assert json.loads("".join(d["delta"] for d in deltas)) == {"city": "Paris"} == json.loads(done["arguments"])
    assert done["name"] == "get_weather" and done["item_id"] == added["item"]["id"]
    response = first[-1]["response"]
    assert response["status"] == "completed" and [o["type"] for o in response["output"]] == ["function_call"]

    # What the runtime was asked: the tools first, then the call and its output as chat turns.
    asked_first, asked_second = runtime.requests[-2:]
    (tool,) = asked_first.chat.tools
    assert (tool.name, tool.description, json.loads(tool.parameters)) == (
        "get_weather",
        WEATHER["description"],
        WEATHER["parameters"],
    )
    assert asked_first.chat.tool_choice == pb.TOOL_CHOICE_AUTO
    assert created["item"]["type"] == "function_call_output" and created["item"]["call_id"] == "call_1"
    user, assistant, result = asked_second.chat.messages
    assert (user.role, user.content) == ("user", "What is the weather in Paris?")
    assert assistant.role == "assistant" and list(assistant.tool_calls) == [
        pb.ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')
    ]
    assert (result.role, result.tool_call_id, result.name, result.content) == (
        "tool",
        "call_1",
        "get_weather",
        '{"sky": "sunny", "temp_c": 21}',
    )
    assert second[-1]["response"]["status"] == "completed"
    assert second[-1]["response"]["output"][0]["content"][0]["text"] == "Sunny, 21 C."


def test_bad_tools_and_unknown_call_ids_are_error_events_and_the_session_goes_on(router):
    async def body(client: Client):
        answers = []
        for event_type, fields in [
            ("session.update", {"session": {"tools": [{**WEATHER, "name": "get weather"}]}}),
            ("response.create", {"response": {"tool_choice": "required"}}),  # no tools in this session
            ("conversation.item.create", {"item": {"type": "function_call_output", "call_id": "nope", "output": ""}}),
        ]:
            await client.send(event_type, **fields)
            answers.append(await client.receive(timeout_s=5))
        await client.send("session.update", session={"tools": [WEATHER]})
        answers.append(await client.receive(timeout_s=5))
        return answers

    *errors, updated = asyncio.run(connected(router.base_url, MODEL, body))
    assert [e["type"] for e in errors] == ["error"] * 3
    assert [e["error"]["param"] for e in errors] == ["tools[0].name", "tool_choice", "item.call_id"]
    assert updated["type"] == "session.updated" and updated["session"]["tools"] == [WEATHER]
