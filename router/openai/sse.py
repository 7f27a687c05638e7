"""Server-sent events as OpenAI streams them: for chat and completions `data: {json}` per chunk, then
`data: [DONE]`; for the Responses API an `event: <type>` line before each `data:` line, and no
`[DONE]` (its last event, response.completed or the like, says the stream is over).

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

    async def send_event(self, event: dict) -> None:
        """A Responses API event, named by its `type`."""
        data = json.dumps(event, separators=(",", ":")).encode()
        await self.response.write(b"event: " + event["type"].encode() + b"\ndata: " + data + b"\n\n")

    async def end(self) -> None:
        await self.response.write_eof()

    async def done(self) -> None:
        await self.response.write(b"data: [DONE]\n\n")
        await self.response.write_eof()
