"""Must show 5: the WebSocket realtime API (/v1/realtime) through `shoal router`.

A session carries several turns over one connection (the second turn reuses the first one's KV
through the prefix cache); `response.cancel` stops generation and the runtime's KV blocks are free
at once; a client that stops reading makes the router stop pulling tokens (its memory stays flat)
and leaving cancels the runtime call. Plus the errors, timeouts and close codes.
"""

import asyncio
import json
import socket
import time

import aiohttp
import pytest

from tests.router.conftest import MODEL
from tests.router.harness import RouterProcess, pool
from tests.router.realtime_clients import Client, handshake, masked_text_frame

pytestmark = pytest.mark.integration
REALTIME = {"idle_timeout_s": 3.0, "max_lifetime_s": 120.0, "send_buffer_bytes": 16384, "max_conversation_chars": 5000}


@pytest.fixture(scope="module")
def fake(loop_thread):
    from tests.router.fake_runtime import FakeRuntime

    fake = loop_thread.run(FakeRuntime(tokens=100_000, text="x" * 4096).start())  # 400 MB if nobody stopped it
    yield fake
    loop_thread.run(fake.stop())


@pytest.fixture(scope="module")
def router(stable_runtime, fake):
    pools = [pool("chat", {"r1": [stable_runtime]}, model=MODEL), pool("fake", {"v1": [fake]}, model="fake-model")]
    router = RouterProcess(pools, realtime=REALTIME).wait_ready()
    yield router
    assert router.stop() == 0, router.logs()


async def session(router, body_fn, model: str = MODEL):
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": "Bearer sk-test-quiet"}
        async with http.ws_connect(f"{router.base_url}/v1/realtime?model={model}", headers=headers) as ws:
            client = Client(ws)
            created = await client.receive()
            assert created["type"] == "session.created" and created["session"]["model"] == model
            return await body_fn(client)


def test_a_session_carries_several_turns(router):
    async def body(client: Client):
        await client.send(
            "session.update",
            session={"instructions": "You are terse.", "temperature": 0, "max_response_output_tokens": 24},
        )
        updated, _ = await client.until("session.updated")
        await client.say("My name is Ada. Please remember it.")
        await client.until("conversation.item.created")
        await client.send("response.create")
        first, events = await client.until("response.done")
        deltas = "".join(e["delta"] for e in events if e["type"] == "response.text.delta")
        text_done = next(e for e in events if e["type"] == "response.text.done")
        await client.say("What is my name?")
        await client.send("response.create")
        second, events2 = await client.until("response.done")
        return updated, first, deltas, text_done, second, events2

    updated, first, deltas, text_done, second, events2 = asyncio.run(session(router, body))
    assert (
        updated["session"]["instructions"] == "You are terse."
        and updated["session"]["max_response_output_tokens"] == 24
    )
    assert first["response"]["status"] in ("completed", "incomplete") and deltas and text_done["text"] == deltas
    assert first["response"]["output"][0]["content"][0]["text"] == deltas
    assert [e["type"] for e in events2][:2] == ["conversation.item.created", "response.created"]
    u1, u2 = first["response"]["usage"], second["response"]["usage"]
    assert u2["input_tokens"] > u1["input_tokens"] + u1["output_tokens"]  # the whole conversation went up again
    assert u2["input_token_details"]["cached_tokens"] >= 16  # and the runtime's prefix cache served its start


def test_cancel_mid_response_frees_the_kv_blocks_at_once(router, stable_runtime):
    async def body(client: Client):
        await client.send("session.update", session={"temperature": 0, "max_response_output_tokens": 1500})
        await client.say("Write a very long story about a dragon who learns to bake bread.")
        await client.send("response.create")
        deltas = 0
        while deltas < 3:
            deltas += (await client.receive())["type"] == "response.text.delta"
        busy = await asyncio.to_thread(stable_runtime.stats)
        await client.send("response.cancel")
        cancelled_at = time.monotonic()
        done, _ = await client.until("response.done")
        while True:
            stats = await asyncio.to_thread(stable_runtime.stats)
            if stats.kv_blocks_free == stats.kv_blocks_total or time.monotonic() - cancelled_at > 5:
                return busy, done, stats, time.monotonic() - cancelled_at

    busy, done, freed, seconds = asyncio.run(session(router, body))
    assert busy.num_requests_running == 1 and busy.kv_blocks_free < busy.kv_blocks_total
    assert (
        done["response"]["status"] == "cancelled" and done["response"]["status_details"]["reason"] == "client_cancelled"
    )
    assert freed.num_requests_running == 0 and freed.kv_blocks_free == freed.kv_blocks_total
    assert seconds < 1.0


def test_a_client_that_stops_reading_stops_the_stream_and_router_memory_stays_flat(router, fake):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.connect(("127.0.0.1", router.port))
    sock.sendall(handshake("fake-model"))
    assert b"101" in sock.recv(1024).split(b"\r\n")[0]
    for event in (
        {"type": "session.update", "session": {"max_response_output_tokens": 100_000}},
        {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go"}]},
        },
        {"type": "response.create"},
    ):
        sock.sendall(masked_text_frame(json.dumps(event)))
    # From here on the client reads nothing.
    samples = []
    for _ in range(12):
        time.sleep(0.5)
        samples.append((fake.counters.sent, router.rss_bytes()))
    sent_total = fake.counters.sent
    sock.close()  # leaving cancels the runtime call
    deadline = time.monotonic() + 5
    while fake.counters.in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    print(
        f"\nnon-reading client: the fake runtime could send {sent_total} of 100000 messages "
        f"({sent_total * 4 / 1024:.0f} MiB of 400); router RSS MiB {[round(r / 2**20) for _, r in samples]}"
    )
    assert 0 < sent_total < 10_000  # the router stopped pulling
    assert samples[-1][0] - samples[5][0] <= 64  # and stayed stopped for the last three seconds
    assert (samples[-1][1] - samples[3][1]) < 8 * 2**20
    assert fake.counters.cancelled >= 1 and fake.counters.in_flight == 0


def test_errors_timeouts_and_close_codes(router):
    async def main():
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{router.base_url}/v1/realtime?model={MODEL}") as unauthenticated:
                no_key = unauthenticated.status
            headers = {"Authorization": "Bearer sk-test-quiet"}
            async with http.get(f"{router.base_url}/v1/realtime?model=nope", headers=headers) as unknown:
                no_model = (unknown.status, (await unknown.json())["error"]["code"])
            async with http.ws_connect(f"{router.base_url}/v1/realtime?model={MODEL}", headers=headers) as ws:
                client = Client(ws)
                await client.receive()
                await ws.send_str("{not json")
                bad_json = await client.receive()
                await client.send("response.create")
                empty = await client.receive()
                await client.send("session.update", session={"temperature": 9})
                bad_value = await client.receive()
                await client.send("dance")
                unknown_event = await client.receive()
                await client.say("x" * 6000)
                too_long = await client.receive()
                started = time.monotonic()
                goodbye = await client.receive(timeout_s=10)  # idle for idle_timeout_s
                closing = await ws.receive(timeout=10)
                return (
                    no_key,
                    no_model,
                    bad_json,
                    empty,
                    bad_value,
                    unknown_event,
                    too_long,
                    goodbye,
                    closing,
                    time.monotonic() - started,
                )

    no_key, no_model, bad_json, empty, bad_value, unknown_event, too_long, goodbye, closing, idle_s = asyncio.run(
        main()
    )
    assert no_key == 401 and no_model == (404, "model_not_found")
    assert bad_json["type"] == "error" and bad_json["error"]["code"] == "invalid_json"
    assert empty["error"]["code"] == "empty_conversation"
    assert bad_value["error"]["param"] == "temperature"
    assert unknown_event["error"]["param"] == "type"
    assert too_long["error"]["code"] == "conversation_too_long"
    assert goodbye["error"]["code"] == "idle_timeout" and 2.5 < idle_s < 6
    assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1000
