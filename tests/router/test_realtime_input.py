"""Whatever a realtime client sends, it gets an answer on a session that stays usable: a bad value is
an `error` event naming its field (never an HTTP 500 written into the socket, a close, or silence),
and every response.created ends with exactly one response.done, however soon response.cancel follows.

Values once fatal: max_response_output_tokens past the runtime's int32 (its request could not be
built: a 500 into the upgraded socket); a lone UTF-16 surrogate in text or instructions (UTF-8 cannot
carry it: response.created, then nothing until the idle timeout); response.cancel read before the
response's task first ran (the task never ran, so nothing sent response.done).
"""

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.router.harness import RouterInThread, make_config, pool
from tests.router.realtime_clients import Client, RawClient, connected, user_item

pytestmark = pytest.mark.integration
MODEL = "fake-model"
INT32_MAX = 2**31 - 1
ENDS = ("completed", "incomplete", "cancelled", "failed")


@pytest.fixture(scope="module")
def router(loop_thread):
    from tests.router.fake_runtime import FakeRuntime

    fake = loop_thread.run(FakeRuntime(tokens=3, delay_s=0.002).start())  # max_tokens, when set, wins
    router = RouterInThread(loop_thread, make_config([pool("fake", {"v1": [fake]}, model=MODEL)]))
    yield router
    router.stop()
    loop_thread.run(fake.stop())


def session_update(**session) -> dict:
    return {"type": "session.update", "session": session}


def response_create(**response) -> dict:
    return {"type": "response.create", "response": response}


def item_create(*texts: str) -> dict:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": t} for t in texts]}
    return {"type": "conversation.item.create", "item": item}


BAD = {
    # name: (the event, as a dict or as JSON text, and the `param` its error names; None: code invalid_json)
    "max tokens one past int32": (
        session_update(max_response_output_tokens=INT32_MAX + 1),
        "max_response_output_tokens",
    ),
    "max tokens 10**12": (session_update(max_response_output_tokens=10**12), "max_response_output_tokens"),
    "max tokens 1e12": (session_update(max_response_output_tokens=1e12), "max_response_output_tokens"),
    "max tokens 0": (session_update(max_response_output_tokens=0), "max_response_output_tokens"),
    "max tokens negative": (session_update(max_response_output_tokens=-5), "max_response_output_tokens"),
    "max tokens a word": (session_update(max_response_output_tokens="lots"), "max_response_output_tokens"),
    "max tokens Infinity": (
        '{"type": "session.update", "session": {"max_response_output_tokens": Infinity}}',
        "max_response_output_tokens",
    ),
    "response max tokens 2**31": (response_create(max_output_tokens=2**31), "max_output_tokens"),
    "response max tokens 10**30": (response_create(max_output_tokens=10**30), "max_output_tokens"),
    "instructions lone high surrogate": (session_update(instructions="\ud800"), "instructions"),
    "response instructions lone low surrogate": (response_create(instructions="a\udfffb"), "instructions"),
    "item text lone surrogate": (item_create("\ud800"), "item.content[0].text"),
    "second part's lone surrogate": (item_create("fine", "x\udbff"), "item.content[1].text"),
    "qos_class lone surrogate": (session_update(qos_class="\ud800"), "qos_class"),
    "temperature 10**400": (session_update(temperature=10**400), "temperature"),
    "temperature NaN": ('{"type": "session.update", "session": {"temperature": NaN}}', "temperature"),
    "integer of 5000 digits": (
        '{"type": "session.update", "session": {"max_response_output_tokens": 1' + "0" * 5000 + "}}",
        None,
    ),
    "nested 100000 deep": ("[" * 100_000 + "]" * 100_000, None),
}


async def send(client: Client, event: dict | str) -> None:
    await client.ws.send_str(event if isinstance(event, str) else json.dumps(event))


async def a_turn_works(client: Client) -> None:
    """The session still serves: one more turn, ending as a turn should."""
    await client.say("and now?")
    await client.until("conversation.item.created", timeout_s=5)
    await send(client, response_create(max_output_tokens=3))
    _, seen = await client.until("response.done", timeout_s=5)
    types = [e["type"] for e in seen]
    assert types[0] == "response.created" and types.count("response.done") == 1, types
    assert seen[-1]["response"]["status"] == "incomplete", seen[-1]  # the fake stops at max_tokens


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_value_is_an_error_event_naming_it_and_the_session_goes_on(router, name):
    event, param = BAD[name]

    async def body(client: Client):
        await client.say("hello")
        await client.until("conversation.item.created", timeout_s=5)
        await send(client, event)
        answer = await client.receive(timeout_s=5)
        await a_turn_works(client)
        return answer

    answer = asyncio.run(connected(router.base_url, MODEL, body))
    assert answer["type"] == "error", answer
    error = answer["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    if param is None:
        assert error["code"] == "invalid_json", error


def test_the_largest_int32_is_accepted(router):
    async def body(client: Client):
        await send(client, session_update(max_response_output_tokens=INT32_MAX))
        return await client.receive(timeout_s=5)

    updated = asyncio.run(connected(router.base_url, MODEL, body))
    assert updated["type"] == "session.updated" and updated["session"]["max_response_output_tokens"] == INT32_MAX


# Any JSON value, in any of the fields a client sets, surrogates and out-of-range numbers included.
TEXT = st.text(st.one_of(st.characters(), st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"])), max_size=8)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**40), 10**40),
    st.integers(INT32_MAX - 2, INT32_MAX + 2),
    st.floats(),
    TEXT,
    st.sampled_from(["inf", "realtime", "batch"]),
)
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=6
)
SENTINEL = "sentinel!"  # longer than any TEXT
FIELDS = {
    ("session.update", "max_response_output_tokens"): "max_response_output_tokens",
    ("session.update", "temperature"): "temperature",
    ("session.update", "instructions"): "instructions",
    ("session.update", "qos_class"): "qos_class",
    ("response.create", "max_output_tokens"): "max_output_tokens",
    ("response.create", "instructions"): "instructions",
    ("response.create", "temperature"): "temperature",
    ("conversation.item.create", "text"): "item.content[0].text",
}


def fuzzed(event_type: str, field: str, value) -> dict:
    if event_type == "conversation.item.create":
        event = {"type": event_type, "item": {"type": "message", "role": "user", "content": [{"type": "input_text"}]}}
        event["item"]["content"][0][field] = value
    else:
        event = {"type": event_type, "session" if event_type == "session.update" else "response": {field: value}}
    return {**event, "event_id": "fuzzed"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(list(FIELDS)), value=VALUES)
def test_any_value_in_any_field_is_answered_and_every_response_is_done_once(router, where, value):
    async def body(client: Client):
        await client.say("hello")
        await client.until("conversation.item.created", timeout_s=5)
        await send(client, fuzzed(*where, value))
        await send(client, {"type": "response.cancel"})  # an accepted response.create may ask for 2**31 tokens
        await send(client, session_update(instructions=SENTINEL))
        seen = []
        while not (seen and is_sentinel(seen[-1]) and balanced(seen)):
            seen.append(await client.receive(timeout_s=5))  # never a close frame, never silence
        await a_turn_works(client)
        return seen

    seen = asyncio.run(connected(router.base_url, MODEL, body))
    answer = seen[0]
    if answer["type"] == "error":
        error = answer["error"]
        assert error["event_id"] == "fuzzed" and error["type"] == "invalid_request_error", error
        assert error["param"] in (FIELDS[where], "item.content[0]"), error  # the part, when its text is no string
    else:
        assert answer["type"] in ("session.updated", "response.created", "conversation.item.created"), answer
    ends = [e["response"]["status"] for e in seen if e["type"] == "response.done"]
    assert len(ends) <= 1 and set(ends) <= set(ENDS), seen


def is_sentinel(event: dict) -> bool:
    return event["type"] == "session.updated" and event["session"]["instructions"] == SENTINEL


def balanced(events: list[dict]) -> bool:
    types = [e["type"] for e in events]
    return types.count("response.created") == types.count("response.done")


@pytest.mark.parametrize("gap_s", [None, 0.0, 0.001, 0.003, 0.01, 0.03])
def test_cancel_right_after_create_still_ends_the_response_once(router, gap_s):
    """None: both events in one write, so the router reads the cancel before the response first ran."""

    async def main():
        client = await RawClient.connect(router.router.http_port, MODEL)
        try:
            assert (await client.receive())["type"] == "session.created"
            await client.send({"type": "conversation.item.create", "item": user_item("count to twenty")})
            assert (await client.receive())["type"] == "conversation.item.created"
            trials = []
            for _ in range(5):
                create, cancel = response_create(max_output_tokens=20), {"type": "response.cancel"}
                if gap_s is None:
                    await client.send(create, cancel)
                else:
                    await client.send(create)
                    await asyncio.sleep(gap_s)
                    await client.send(cancel)
                await client.send(session_update())  # its session.updated comes after all the turn had to say
                seen = []
                while not seen or seen[-1]["type"] != "session.updated":
                    seen.append(await client.receive(timeout_s=5))
                trials.append(seen)
            return trials
        finally:
            client.close()

    for seen in asyncio.run(main()):
        types = [e["type"] for e in seen]
        assert types.count("response.created") == 1 and types.count("response.done") == 1, types
        assert types.index("response.created") < types.index("response.done") < types.index("session.updated")
        done = next(e for e in seen if e["type"] == "response.done")
        assert done["response"]["status"] in ("cancelled", "incomplete"), done
