"""The client's end of a realtime session: ordered sends that give up on a client that is gone.

A client can vanish without a close frame (a TCP reset, a dropped NAT entry, a frozen or killed
process). Until the session notices, its response holds the runtime's KV, a pool slot and the
tenant's lease, so it notices by whichever comes first:

- the receive side ends: a close frame, a reset or EOF, or aiohttp's heartbeat, which pings after
  `heartbeat_s` without a frame from the client and gives up when no pong came `heartbeat_s / 2` later;
- a send fails: the transport is closing or gone;
- a send waits `send_timeout_s` on a client that stopped reading (its TCP window stays full). The
  heartbeat alone misses a client that keeps sending events but never reads.

A failed or late send aborts the transport, which ends the receive side too, so the session has one
place that notices, its receive loop; the send raises PeerGone to stop whoever was sending.
"""

import asyncio
import json

from aiohttp import web

CLOSE_TIMEOUT_S = 2.0  # how long the close handshake (or a goodbye) may wait on a client


class PeerGone(Exception):
    """The client can no longer be reached; what was being sent to it stops."""


class Peer:
    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None, send_timeout_s: float):
        self.ws = ws
        self.transport = transport
        self.send_timeout_s = send_timeout_s
        self._send_lock = asyncio.Lock()

    async def send(self, event: dict, timeout_s: float | None = None) -> None:
        """Sends one event after those before it, waiting while the client is behind (backpressure: a
        client that reads slowly slows its response) for at most timeout_s, send_timeout_s by default."""
        # ensure_ascii (the default) keeps text the client sent, lone surrogates included, sendable.
        text = json.dumps(event, separators=(",", ":"))
        try:
            async with asyncio.timeout(timeout_s or self.send_timeout_s):
                async with self._send_lock:
                    if self.ws.closed:
                        raise PeerGone
                    await self.ws.send_str(text)
        except (TimeoutError, ConnectionError) as error:
            self.abort()
            raise PeerGone from error

    def abort(self) -> None:
        """Drops the connection at once, unsent bytes and all: the receive side ends, the socket is freed.
        (A plain close would wait, possibly for ever, to flush bytes to a client that does not read.)"""
        if self.transport is not None:
            self.transport.abort()

    async def close(self, code: int, reason: str) -> None:
        """The close handshake, briefly; a client that does not take part is cut off."""
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.ws.close(code=code, message=reason.encode())
        except (TimeoutError, ConnectionError):
            self.abort()
