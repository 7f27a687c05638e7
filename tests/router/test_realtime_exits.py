"""However a realtime session ends, its response in flight ends with it, at once: the runtime call is
cancelled (its KV freed) and the router gives back the pool slot and the tenant's lease. A client
that vanished without a close frame used to keep its response generating to max_output_tokens,
holding all three, until a few such clients starved every other tenant.

One table over the ways out: the client's close frame, a TCP reset, a client that keeps sending but
stops reading (only the bounded send can tell), a client that goes silent while its response
trickles (only the heartbeat can tell), and the router shutting down.
"""

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import pytest

from tests.router.harness import RouterInThread, make_config, pool
from tests.router.realtime_clients import KEY, Client, RawClient, user_item

pytestmark = pytest.mark.integration
MODEL = "fake-model"
TENANT = "quiet"  # KEY's
NEVER_S = 60.0  # a liveness check that must not be the one that notices
GONE_WITHIN_S = 5.0
LONG = [
    {"type": "conversation.item.create", "item": user_item("go on for ever")},
    {"type": "response.create"},  # max_response_output_tokens "inf": the fake streams all its 100000 tokens
]


@dataclass(frozen=True)
class Exit:
    leave: Callable[["Setup"], Awaitable[dict]]  # starts a long response, then leaves; what it held then
    heartbeat_s: float
    send_timeout_s: float
    text: str  # each token's text
    delay_s: float  # between tokens


class Setup:
    def __init__(self, loop_thread, start_fake, exit: Exit):
        self.loop_thread = loop_thread
        self.exit = exit
        self.clients: list[RawClient] = []
        self.fake = start_fake(tokens=100_000, text=exit.text, delay_s=exit.delay_s)
        config = make_config([pool("fake", {"v1": [self.fake]}, model=MODEL)])
        self.router = RouterInThread(loop_thread, config)
        realtime = self.router.router.realtime
        realtime.config = dataclasses.replace(
            realtime.config, heartbeat_s=exit.heartbeat_s, send_timeout_s=exit.send_timeout_s
        )
        self.stopped = False

    @property
    def port(self) -> int:
        return self.router.router.http_port

    @contextlib.asynccontextmanager
    async def client_mid_response(self):
        """A well-behaved client whose long response is streaming."""
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{self.port}/v1/realtime?model={MODEL}"
            async with http.ws_connect(url, headers={"Authorization": f"Bearer {KEY}"}) as ws:
                for event in LONG:
                    await ws.send_json(event)
                client = Client(ws)
                await client.until("response.text.delta")
                yield client

    async def raw_client_mid_response(self, **settings) -> RawClient:
        """A client by hand whose long response has started."""
        client = await RawClient.connect(self.port, MODEL, **settings)
        self.clients.append(client)
        await client.send(*LONG)
        return client

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.router.stop()

    async def held(self) -> dict[str, int]:
        """What the session's response holds, read on the router's loop."""

        def read() -> dict[str, int]:
            router = self.router.router
            return {
                "runtime requests": self.fake.counters.in_flight,
                "tenant leases": router.limiter.in_flight(TENANT),
                "pool slots": router.pools["fake"].gate.in_flight("realtime"),
                "sessions": len(router.realtime.open),
            }

        return await asyncio.to_thread(self.loop_thread.call, read)

    async def busy(self) -> dict[str, int]:
        """What the running response holds, once it holds it all."""
        held, _ = await self.until_held(1, GONE_WITHIN_S)
        return held

    async def until_held(self, count: int, within_s: float) -> tuple[dict[str, int], float]:
        started = time.monotonic()
        while True:
            held = await self.held()
            seconds = time.monotonic() - started
            if set(held.values()) == {count} or seconds > within_s:
                return held, seconds
            await asyncio.sleep(0.02)


@pytest.fixture
def setup(request, loop_thread, start_fake):
    setup = Setup(loop_thread, start_fake, EXITS[request.param])
    yield setup
    setup.stop()


async def close_frame(setup: Setup) -> dict:
    async with setup.client_mid_response() as client:
        busy = await setup.busy()
        await client.ws.close()
    return busy


async def tcp_reset(setup: Setup) -> dict:
    client = await setup.raw_client_mid_response()
    busy = await setup.busy()
    client.reset()
    return busy


async def keeps_sending_stops_reading(setup: Setup) -> dict:
    client = await setup.raw_client_mid_response(receive_buffer_bytes=8192)
    busy = await setup.busy()
    # Never reads; an event every 0.2 s keeps the heartbeat from ever pinging, until the router hangs up.
    started = time.monotonic()
    while time.monotonic() - started < GONE_WITHIN_S and (await setup.held())["runtime requests"]:
        try:
            await client.send({"type": "session.update", "session": {}})
        except ConnectionError:
            break
        await asyncio.sleep(0.2)
    return busy


async def goes_silent(setup: Setup) -> dict:
    await setup.raw_client_mid_response()
    return await setup.busy()  # and from here on the client neither reads nor writes, nor answers pings


async def router_shuts_down(setup: Setup) -> dict:
    async with setup.client_mid_response() as client:
        busy = await setup.busy()
        stopping = asyncio.create_task(asyncio.to_thread(setup.stop))
        done, _ = await client.until("response.done")
        closing = await client.ws.receive(timeout=10)
        await stopping
    # The client still listening heard why its response ended, then the router's going-away close.
    assert done["response"]["status"] == "cancelled", done
    assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == aiohttp.WSCloseCode.GOING_AWAY, closing
    return busy


EXITS = {
    "close frame": Exit(close_frame, NEVER_S, NEVER_S, "tok ", 0.005),
    "TCP reset": Exit(tcp_reset, NEVER_S, NEVER_S, "tok ", 0.005),
    "keeps sending, stops reading": Exit(keeps_sending_stops_reading, NEVER_S, 1.0, "x" * 4096, 0.0),
    "goes silent": Exit(goes_silent, 0.5, NEVER_S, "tok ", 0.01),
    "router shuts down": Exit(router_shuts_down, NEVER_S, NEVER_S, "tok ", 0.005),
}


@pytest.mark.parametrize("setup", list(EXITS), indirect=True)
def test_a_session_ending_any_way_cancels_its_response_and_gives_everything_back(setup: Setup):
    async def main():
        busy = await setup.exit.leave(setup)
        left, seconds = await setup.until_held(0, GONE_WITHIN_S)
        for client in setup.clients:
            client.close()
        return busy, left, seconds

    busy, left, seconds = asyncio.run(main())
    counters = setup.fake.counters
    assert busy == dict.fromkeys(busy, 1), busy  # the response was running when the session ended
    assert left == dict.fromkeys(left, 0), f"still held after {seconds:.1f} s: {left}"
    assert counters.cancelled == 1 and counters.finished == 0 and counters.requests == 1
    assert counters.sent < 100_000
