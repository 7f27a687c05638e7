"""Function tools in the realtime session, piece by piece and fast: reading tools and tool_choice
(errors name the param), the function call items and the chat messages they become, and a
response's function call events from a scripted runtime stream (router/realtime/response.py)."""

import asyncio
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.router.errors import InvalidRequest
from shoal.router.realtime.events import SessionSettings, apply_settings
from shoal.router.realtime.items import FunctionCall, FunctionCallOutput, Message, chat_messages, parse_item
from shoal.router.realtime.response import Response
from shoal.router.request import InferenceRequest, Prompt
from shoal.v1 import runtime_pb2 as pb
from tests.router.realtime_clients import RecordingPeer

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
TIME = {"type": "function", "name": "get_time"}


def refused(apply, *args) -> str:
    """The param the InvalidRequest names."""
    with pytest.raises(InvalidRequest) as error:
        apply(*args)
    return error.value.param


def test_tools_and_tool_choice_are_kept_typed_and_echoed_as_given():
    settings = apply_settings(SessionSettings(), {"tools": [WEATHER, TIME], "tool_choice": "required"})
    assert [t.name for t in settings.tools] == ["get_weather", "get_time"]
    assert json.loads(settings.tools[0].parameters) == WEATHER["parameters"] and settings.tools[1].parameters == ""
    assert settings.tool_choice == pb.TOOL_CHOICE_REQUIRED
    public = settings.public()
    assert public["tools"] == [WEATHER, {**TIME, "description": "", "parameters": {}}]
    assert public["tool_choice"] == "required"
    assert SessionSettings().public()["tools"] == [] and SessionSettings().public()["tool_choice"] == "auto"


@pytest.mark.parametrize(
    ("choice", "mode", "name"),
    [
        ("auto", pb.TOOL_CHOICE_AUTO, ""),
        ("none", pb.TOOL_CHOICE_NONE, ""),
        ("required", pb.TOOL_CHOICE_REQUIRED, ""),
        ({"type": "function", "name": "get_time"}, pb.TOOL_CHOICE_NAMED, "get_time"),
    ],
)
def test_each_tool_choice(choice, mode, name):
    settings = apply_settings(SessionSettings(), {"tools": [WEATHER, TIME], "tool_choice": choice})
    assert (settings.tool_choice, settings.tool_choice_name) == (mode, name)
    assert settings.public()["tool_choice"] == choice


def test_a_response_may_change_the_tools_for_itself():
    session = apply_settings(SessionSettings(), {"tools": [WEATHER, TIME]})
    one = apply_settings(session, {"tool_choice": {"type": "function", "name": "get_weather"}})
    assert one.tool_choice_name == "get_weather" and session.tool_choice == pb.TOOL_CHOICE_AUTO
    assert apply_settings(session, {"tools": []}).tools == ()


BAD_SETTINGS = {
    # name: (session.update's `session`, the param its error names)
    "tools not an array": ({"tools": {"name": "f"}}, "tools"),
    "a tool not an object": ({"tools": ["get_weather"]}, "tools[0]"),
    "a tool of another type": ({"tools": [{**WEATHER, "type": "mcp"}]}, "tools[0].type"),
    "no name": ({"tools": [{"type": "function"}]}, "tools[0].name"),
    "a name with a space": ({"tools": [{**WEATHER, "name": "get weather"}]}, "tools[0].name"),
    "a name of 65 characters": ({"tools": [{**WEATHER, "name": "f" * 65}]}, "tools[0].name"),
    "a name given twice": ({"tools": [TIME, WEATHER, TIME]}, "tools[2].name"),
    "a description not text": ({"tools": [{**WEATHER, "description": 3}]}, "tools[0].description"),
    "parameters not an object": ({"tools": [{**WEATHER, "parameters": "{}"}]}, "tools[0].parameters"),
    "parameters not a schema": ({"tools": [TIME, {**WEATHER, "parameters": {"type": 5}}]}, "tools[1].parameters"),
    "a field a tool lacks": ({"tools": [{**WEATHER, "returns": "text"}]}, "tools[0].returns"),
    "an unknown mode": ({"tool_choice": "any"}, "tool_choice"),
    "a mode not text": ({"tool_choice": 1}, "tool_choice"),
    "a function without a name": ({"tools": [TIME], "tool_choice": {"type": "function"}}, "tool_choice.name"),
    "Chat Completions' choice": (
        {"tools": [TIME], "tool_choice": {"type": "function", "function": {"name": "get_time"}}},
        "tool_choice.name",
    ),
    "a function not among the tools": (
        {"tools": [TIME], "tool_choice": {"type": "function", "name": "f"}},
        "tool_choice",
    ),
    "required without tools": ({"tool_choice": "required"}, "tool_choice"),
}


@pytest.mark.parametrize("name", list(BAD_SETTINGS))
def test_bad_tools_or_tool_choice_are_refused_naming_the_param(name):
    data, param = BAD_SETTINGS[name]
    assert refused(apply_settings, SessionSettings(), data) == param


def test_tool_choice_is_checked_against_the_tools_it_is_merged_with():
    session = apply_settings(
        SessionSettings(), {"tools": [TIME], "tool_choice": {"type": "function", "name": "get_time"}}
    )
    assert refused(apply_settings, session, {"tools": [WEATHER]}) == "tool_choice"  # get_time is gone


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.sampled_from(["function", "f", "\ud800"]),
)
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner), max_leaves=8
)
TOOL_KEYS = st.sampled_from(["type", "name", "description", "parameters", "call_id", "output", "arguments", "role"])
SHAPED = st.dictionaries(TOOL_KEYS, VALUES, max_size=5)  # near a tool, a choice or an item


@given(field=st.sampled_from(["tools", "tool_choice"]), value=VALUES | SHAPED | st.lists(SHAPED, max_size=3))
def test_any_tools_or_tool_choice_are_taken_or_refused_naming_them(field, value):
    try:
        apply_settings(SessionSettings(), {"tools": [WEATHER]} | {field: value})
    except InvalidRequest as error:
        assert error.param.startswith(field), error.param


@given(item=VALUES | SHAPED)
def test_any_item_is_taken_or_refused_naming_it(item):
    try:
        parse_item(item)
    except InvalidRequest as error:
        assert error.param.startswith("item"), error.param


def test_function_call_items_are_read():
    output = parse_item({"type": "function_call_output", "call_id": "call_1", "output": '{"temp": 21}'})
    assert isinstance(output, FunctionCallOutput) and (output.call_id, output.output) == ("call_1", '{"temp": 21}')
    assert output.public() | {"id": None} == {
        "id": None,
        "object": "realtime.item",
        "type": "function_call_output",
        "status": "completed",
        "call_id": "call_1",
        "output": '{"temp": 21}',
    }
    call = parse_item({"type": "function_call", "call_id": "call_0", "name": "get_time", "arguments": "{}"})
    assert isinstance(call, FunctionCall) and (call.call_id, call.name, call.arguments) == ("call_0", "get_time", "{}")
    assert call.public()["type"] == "function_call" and call.public()["arguments"] == "{}"


BAD_ITEMS = {
    "not an object": ("call_1", "item"),
    "an unknown type": ({"type": "image"}, "item.type"),
    "an output without call_id": ({"type": "function_call_output", "output": "ok"}, "item.call_id"),
    "an empty call_id": ({"type": "function_call_output", "call_id": "", "output": "ok"}, "item.call_id"),
    "an output not text": ({"type": "function_call_output", "call_id": "c", "output": {"temp": 21}}, "item.output"),
    "an output with a role": (
        {"type": "function_call_output", "call_id": "c", "output": "", "role": "tool"},
        "item.role",
    ),
    "a call without arguments": ({"type": "function_call", "call_id": "c", "name": "f"}, "item.arguments"),
    "a call of a bad name": ({"type": "function_call", "call_id": "c", "name": "f()", "arguments": ""}, "item.name"),
    "a message of role tool": ({"type": "message", "role": "tool", "content": []}, "item.role"),
}


@pytest.mark.parametrize("name", list(BAD_ITEMS))
def test_bad_items_are_refused_naming_the_param(name):
    data, param = BAD_ITEMS[name]
    assert refused(parse_item, data) == param


def test_the_conversation_becomes_chat_messages_with_calls_and_their_outputs():
    conversation = [
        Message("i1", "user", "Weather and time in Paris?"),
        Message("i2", "assistant", "Let me look."),
        FunctionCall("i3", "call_a", "get_weather", '{"city": "Paris"}'),
        FunctionCall("i4", "call_b", "get_time", "{}"),
        FunctionCallOutput("i5", "call_a", "21 C"),
        FunctionCallOutput("i6", "call_b", "noon"),
        Message("i7", "assistant", "21 C at noon."),
    ]
    messages = chat_messages(conversation)
    assert [(m.role, m.content) for m in messages] == [
        ("user", "Weather and time in Paris?"),
        ("assistant", "Let me look."),  # the calls are this turn's
        ("tool", "21 C"),
        ("tool", "noon"),
        ("assistant", "21 C at noon."),
    ]
    assert list(messages[1].tool_calls) == [
        pb.ToolCall(id="call_a", name="get_weather", arguments='{"city": "Paris"}'),
        pb.ToolCall(id="call_b", name="get_time", arguments="{}"),
    ]
    assert [(m.tool_call_id, m.name) for m in messages[2:4]] == [("call_a", "get_weather"), ("call_b", "get_time")]
    lone_call = chat_messages([Message("i1", "user", "Time?"), FunctionCall("i2", "call_c", "get_time", "{}")])
    assert lone_call[1].role == "assistant" and lone_call[1].content == "" and len(lone_call[1].tool_calls) == 1


# A response's stream, scripted: text, then two calls in pieces, then the last message.
def piece(index: int, arguments: str, call_id: str = "", name: str = "") -> pb.GenerateResponse:
    return pb.GenerateResponse(tool_calls=[pb.ToolCallDelta(index=index, id=call_id, name=name, arguments=arguments)])


CALLS = [
    pb.GenerateResponse(text="Let me look."),
    piece(0, '{"city":', "call_a", "get_weather"),
    piece(0, ' "Paris"}'),
    piece(1, "", "call_b", "get_time"),
    piece(1, "{}"),
    pb.GenerateResponse(
        finish_reason=pb.FINISH_REASON_TOOL_CALLS, usage=pb.Usage(prompt_tokens=9, completion_tokens=20)
    ),
]


class Generation:
    """The scripted messages; with `hang`, it then waits (for a cancel) instead of ending."""

    def __init__(self, messages: list[pb.GenerateResponse], hang: bool):
        self.script = messages
        self.hang = hang
        self.finals: list[pb.GenerateResponse] = []
        self.closed = False

    async def messages(self):
        for message in self.script:
            await asyncio.sleep(0)
            if message.finish_reason:
                self.finals.append(message)
            yield message
        if self.hang:
            await asyncio.Event().wait()

    async def close(self) -> None:
        self.closed = True


class Dispatcher:
    def __init__(self, messages: list[pb.GenerateResponse], hang: bool = False):
        self.generation = Generation(messages, hang)

    async def start(self, request: InferenceRequest) -> Generation:
        return self.generation


def respond(dispatcher: Dispatcher, peer: RecordingPeer, cancel_when: str | None = None) -> list:
    """The conversation after one response (to a user's question), cancelled once `cancel_when`
    (an event type) was sent, if given."""

    async def main():
        conversation = [Message("i0", "user", "Weather and time in Paris?")]
        request = InferenceRequest("m", Prompt(chat=pb.ChatMessages()), pb.SamplingParams(), "t", "realtime")
        response = Response("resp_1", request, peer, dispatcher, conversation)
        if cancel_when is not None:
            while not any(e["type"] == cancel_when for e in peer.sent):
                await asyncio.sleep(0)
            response.cancel("client_cancelled")
        await response.wait()
        return conversation

    return asyncio.run(main())


def test_a_response_that_calls_functions_streams_each_call_then_ends_completed():
    peer = RecordingPeer()
    conversation = respond(Dispatcher(CALLS), peer)
    sent = peer.sent
    assert [e["type"] for e in sent] == [
        "response.text.delta",
        "response.output_item.added",  # get_weather
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",  # get_time begins: get_weather is whole
        "response.output_item.done",
        "response.output_item.added",  # get_time
        "response.function_call_arguments.delta",
        "response.text.done",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.done",
    ]
    added = sent[1]
    assert added["output_index"] == 1 and added["response_id"] == "resp_1"  # the message is output 0
    assert {k: added["item"][k] for k in ("type", "call_id", "name", "arguments", "status")} == {
        "type": "function_call",
        "call_id": "call_a",
        "name": "get_weather",
        "arguments": "",
        "status": "in_progress",
    }
    deltas = [e for e in sent if e["type"] == "response.function_call_arguments.delta" and e["call_id"] == "call_a"]
    assert all(e["item_id"] == added["item"]["id"] and e["output_index"] == 1 for e in deltas)
    done_a = sent[4]
    assert json.loads("".join(e["delta"] for e in deltas)) == {"city": "Paris"} == json.loads(done_a["arguments"])
    assert (done_a["name"], done_a["call_id"], done_a["item_id"]) == ("get_weather", "call_a", added["item"]["id"])
    assert sent[5]["item"]["status"] == "completed" and sent[5]["item"]["arguments"] == '{"city": "Paris"}'
    assert sent[6]["output_index"] == 2 and sent[-2]["output_index"] == 2
    response = sent[-1]["response"]
    assert response["status"] == "completed" and response["usage"]["output_tokens"] == 20
    assert [(o["type"], o["status"]) for o in response["output"]] == [
        ("message", "completed"),
        ("function_call", "completed"),
        ("function_call", "completed"),
    ]
    assert [o.get("arguments") for o in response["output"]] == [None, '{"city": "Paris"}', "{}"]
    assert conversation[1:] == [
        Message(response["output"][0]["id"], "assistant", "Let me look."),
        FunctionCall(response["output"][1]["id"], "call_a", "get_weather", '{"city": "Paris"}'),
        FunctionCall(response["output"][2]["id"], "call_b", "get_time", "{}"),
    ]


def test_a_call_is_in_the_conversation_once_its_arguments_are_done():
    """So the client may send its output then, before response.done."""
    peer = RecordingPeer()
    conversation = respond(Dispatcher(CALLS[1:4], hang=True), peer, cancel_when="response.output_item.done")
    call_a = conversation[1]
    assert (call_a.call_id, call_a.arguments, call_a.status) == ("call_a", '{"city": "Paris"}', "completed")
    assert peer.sent[-1]["response"]["status"] == "cancelled"


def test_a_call_cut_short_ends_incomplete_with_the_arguments_so_far():
    peer = RecordingPeer()
    conversation = respond(Dispatcher(CALLS[:2], hang=True), peer, cancel_when="response.function_call_arguments.delta")
    types = [e["type"] for e in peer.sent]
    assert types[-4:] == [
        "response.text.done",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.done",
    ]
    response = peer.sent[-1]["response"]
    assert response["status"] == "cancelled" and response["output"][1]["status"] == "incomplete"
    assert peer.sent[-3]["arguments"] == response["output"][1]["arguments"] == '{"city":'
    assert conversation[2] == FunctionCall(
        response["output"][1]["id"], "call_a", "get_weather", '{"city":', "incomplete"
    )


def test_a_client_gone_midway_leaves_the_call_as_far_as_read_in_the_conversation():
    peer = RecordingPeer(gone_after=2)  # output_item.added and the first delta; the second delta fails
    conversation = respond(Dispatcher(CALLS[1:3] + CALLS[-1:]), peer)
    assert [e["type"] for e in peer.sent][-1] == "response.function_call_arguments.delta"
    call = conversation[1]
    assert (call.arguments, call.status) == ('{"city": "Paris"}', "incomplete")
