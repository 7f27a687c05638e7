"""Clients of the router's /v1/realtime for tests, from the test's own event loop: a well-behaved one
(aiohttp's), and one written by hand over a plain socket that can misbehave the ways real clients
do (stop reading, go silent, vanish with a TCP reset, send two events in one write); and, for a
response tested on its own, a stand-in for the session's Peer that records what it is sent."""

import asyncio
import base64
import json
import os
import socket
import struct

import aiohttp

from shoal.router.realtime.peer import PeerGone

KEY = "sk-test-quiet"


class Client:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws

    async def send(self, event_type: str, **fields) -> None:
        await self.ws.send_json({"type": event_type, **fields})

    async def receive(self, timeout_s: float = 60) -> dict:
        message = await self.ws.receive(timeout=timeout_s)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        return json.loads(message.data)

    async def until(self, event_type: str, timeout_s: float = 60) -> tuple[dict, list[dict]]:
        """Events up to and including the first of this type."""
        seen = []
        while True:
            event = await self.receive(timeout_s)
            seen.append(event)
            if event["type"] == event_type:
                return event, seen

    async def say(self, text: str) -> None:
        await self.send("conversation.item.create", item=user_item(text))


async def connected(base_url: str, model: str, body):
    """body(client) in a new session, once its session.created came."""
    async with aiohttp.ClientSession() as http:
        url = f"{base_url}/v1/realtime?model={model}"
        async with http.ws_connect(url, headers={"Authorization": f"Bearer {KEY}"}) as ws:
            client = Client(ws)
            assert (await client.receive())["type"] == "session.created"
            return await body(client)


def user_item(text: str) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def handshake(model: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /v1/realtime?model={model} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {KEY}\r\n\r\n"
    ).encode()


def masked_text_frame(text: str) -> bytes:
    """A client's text frame (clients must mask theirs)."""
    payload, mask = text.encode(), os.urandom(4)
    length = len(payload)
    if length < 126:
        header = bytes([0x81, 0x80 | length])
    elif length < 1 << 16:
        header = bytes([0x81, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([0x81, 0x80 | 127]) + length.to_bytes(8, "big")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawClient:
    """A WebSocket client by hand. It answers no ping and reads only when asked to."""

    def __init__(self, sock: socket.socket, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.sock = sock
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, model: str, receive_buffer_bytes: int | None = None) -> "RawClient":
        sock = socket.socket()
        if receive_buffer_bytes is not None:  # small, so a client that stops reading backs the router up soon
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=receive_buffer_bytes or 2**16)
        writer.write(handshake(model))
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(sock, reader, writer)

    async def send(self, *events: dict | str) -> None:
        """The events in one write (so the router reads them in one go); a str is sent as it is."""
        texts = (e if isinstance(e, str) else json.dumps(e) for e in events)
        self.writer.write(b"".join(masked_text_frame(t) for t in texts))
        await self.writer.drain()

    async def receive(self, timeout_s: float = 10) -> dict | int:
        """The next text frame's event, or a close frame's code; pings are skipped (never answered)."""
        async with asyncio.timeout(timeout_s):
            while True:
                first, second = await self.reader.readexactly(2)
                length = second & 0x7F
                if length == 126:
                    length = int.from_bytes(await self.reader.readexactly(2), "big")
                elif length == 127:
                    length = int.from_bytes(await self.reader.readexactly(8), "big")
                payload = await self.reader.readexactly(length)
                opcode = first & 0x0F
                if opcode == 0x1:
                    return json.loads(payload)
                if opcode == 0x8:
                    return int.from_bytes(payload[:2], "big")

    def reset(self) -> None:
        """Vanishes with a TCP reset: no close frame, no FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    def close(self) -> None:
        self.writer.transport.abort()


class RecordingPeer:
    """Takes the events a response sends; with gone_after, the client is gone after that many."""

    def __init__(self, gone_after: int | None = None):
        self.sent: list[dict] = []
        self.gone_after = gone_after

    async def send(self, event: dict, timeout_s: float | None = None) -> None:
        if self.gone_after is not None and len(self.sent) >= self.gone_after:
            raise PeerGone
        self.sent.append(event)

    def types(self) -> list[str]:
        return [e["type"] for e in self.sent]

    def done(self) -> dict:
        (done,) = [e for e in self.sent if e["type"] == "response.done"]
        return done["response"]
