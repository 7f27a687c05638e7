"""Server-sent events as OpenAI streams them: `data: {json}` per chunk, then `data: [DONE]`.

Each send waits until the socket has taken the bytes, so a client that stops reading stops the
stream (and with it the reads from the runtime) instead of piling chunks up in memory.
"""

import json

from aiohttp import web


class SseStream:
    def __init__(self, headers: dict[str, str]):
        self.response = web.StreamResponse(
            headers={
                **headers,
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )

    async def open(self, request: web.Request) -> None:
        await self.response.prepare(request)

    async def send(self, obj: dict) -> None:
        await self.response.write(b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n")

    async def done(self) -> None:
        await self.response.write(b"data: [DONE]\n\n")
        await self.response.write_eof()
