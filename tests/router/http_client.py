"""Small HTTP helpers for router tests: JSON posts and SSE streams with aiohttp, from the test's own
event loop (the router runs on another thread's loop or in another process)."""

import json
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict


@dataclass
class Reply:
    status: int
    headers: dict
    body: object  # parsed JSON, or the text when it is not JSON

    @property
    def error(self) -> dict:
        return self.body["error"]


def auth(key: str | None = "sk-test-quiet", **headers) -> dict:
    return ({"Authorization": f"Bearer {key}"} if key else {}) | headers


async def post(session: aiohttp.ClientSession, url: str, body, key: str | None = "sk-test-quiet", **headers) -> Reply:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    async with session.post(url, data=data, headers=auth(key, **headers)) as response:
        text = await response.text()
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = text
        return Reply(response.status, CIMultiDict(response.headers), parsed)


async def stream(
    session: aiohttp.ClientSession, url: str, body: dict, key: str | None = "sk-test-quiet", **headers
) -> tuple[int, dict, list]:
    """Status, headers and the SSE events (parsed JSON, or the string '[DONE]')."""
    async with session.post(url, json=body, headers=auth(key, **headers)) as response:
        events = []
        async for line in response.content:
            line = line.decode().strip()
            if line.startswith("data: "):
                payload = line.removeprefix("data: ")
                events.append(payload if payload == "[DONE]" else json.loads(payload))
            elif line:
                events.append(("unexpected", line))
        return response.status, CIMultiDict(response.headers), events


def chat(model: str, content: str = "Hi", **params) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": content}], **params}
