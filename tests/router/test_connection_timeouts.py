"""The router's HTTP ports close connections that hold no request in progress for
`client_idle_timeout_s`: idle ones, and slowloris ones whose request line or headers never finish;
a response that streams for longer is not cut."""

import asyncio
import socket
import time

import aiohttp
import pytest

from tests.router.harness import RouterInThread, make_config, pool
from tests.router.http_client import chat, stream

pytestmark = pytest.mark.integration
MODEL = "fake-model"
IDLE_S = 0.5


@pytest.fixture
def router(loop_thread, start_fake):
    fake = start_fake(tokens=2)
    config = make_config([pool("fake", {"v1": [fake]}, model=MODEL)], client_idle_timeout_s=IDLE_S)
    router = RouterInThread(loop_thread, config)
    router.fake = fake
    yield router
    router.stop()


def seconds_until_closed(port: int, sent: bytes, limit_s: float = 5.0) -> float:
    """Connects, sends `sent`, and reads until the server closes; how long that took."""
    with socket.create_connection(("127.0.0.1", port), timeout=limit_s) as sock:
        started = time.monotonic()
        sock.sendall(sent)
        while sock.recv(4096):  # b"" once closed; a timeout (the test fails) if never
            pass
        return time.monotonic() - started


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # connects and says nothing
        b"POST /v1/chat/completions HT",  # a request line that never ends
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: a",  # headers that never end
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",  # one request, then idle on keep-alive
    ],
)
def test_idle_and_slowloris_connections_are_closed_after_the_bound(router, sent):
    for port in (router.router.http_port, router.router.admin_port):
        assert IDLE_S * 0.5 <= seconds_until_closed(port, sent) < IDLE_S + 1.5


def test_a_stream_longer_than_the_bound_is_not_cut(router):
    router.fake.delay_s = 0.1  # 20 tokens: 2 s, four times the bound

    async def main():
        async with aiohttp.ClientSession() as session:
            return await stream(
                session, router.base_url + "/v1/chat/completions", chat(MODEL, max_tokens=20, stream=True)
            )

    status, _, events = asyncio.run(main())
    assert status == 200 and events[-1] == "[DONE]" and router.fake.counters.finished == 1


def test_a_body_trickled_slower_than_the_bound_gets_a_408(loop_thread, start_fake):
    fake = start_fake(tokens=2)
    config = make_config([pool("fake", {"v1": [fake]}, model=MODEL)], client_body_timeout_s=IDLE_S)
    router = RouterInThread(loop_thread, config)
    try:
        body = b'{"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}'
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-test-quiet\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        started = time.monotonic()  # before the connection: the router's clock may start as it accepts
        with socket.create_connection(("127.0.0.1", router.router.http_port), timeout=5) as sock:
            sock.sendall(head + body[:10])  # then a byte now and then, never the whole body in time
            sock.settimeout(0.2)
            answer, sent = b"", 10
            while not answer and time.monotonic() - started < 5:
                try:
                    answer = sock.recv(4096)
                except TimeoutError:
                    sock.sendall(body[sent : sent + 1])
                    sent += 1
            seconds = time.monotonic() - started
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line.startswith(b"HTTP/1.1 408"), answer
        assert b'"code":"request_timeout"' in rest.replace(b" ", b"") and IDLE_S <= seconds < IDLE_S + 1.5
        assert fake.counters.finished == 0
    finally:
        router.stop()
