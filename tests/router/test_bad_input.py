"""Must show 6: bad input gets a clear 4xx in OpenAI's error shape, and the router keeps serving:
malformed JSON, wrong types, huge bodies, unknown models and routes, bad keys, requests the runtime
refuses."""

import asyncio
import json

import aiohttp
import pytest

from tests.router.conftest import MODEL
from tests.router.harness import RouterProcess, pool
from tests.router.http_client import chat, post

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def router(stable_runtime):
    router = RouterProcess([pool("chat", {"r1": [stable_runtime]}, model=MODEL)], max_body_bytes=1 << 20).wait_ready()
    yield router
    assert router.stop() == 0, router.logs()


CASES = [
    # (name, path, body, key, status, param, code)
    ("malformed JSON", "/v1/chat/completions", b'{"model": "x", "messages": [', "sk-test-quiet", 400, None, None),
    ("not UTF-8", "/v1/chat/completions", b"\xff\xfe{}", "sk-test-quiet", 400, None, None),
    ("JSON but not an object", "/v1/chat/completions", b"[1, 2, 3]", "sk-test-quiet", 400, None, None),
    ("deeply nested", "/v1/chat/completions", b"[" * 100_000 + b"]" * 100_000, "sk-test-quiet", 400, None, None),
    (
        "messages of the wrong type",
        "/v1/chat/completions",
        {"model": MODEL, "messages": "hello"},
        "sk-test-quiet",
        400,
        "messages",
        None,
    ),
    (
        "temperature as a string",
        "/v1/chat/completions",
        chat(MODEL, temperature="warm"),
        "sk-test-quiet",
        400,
        "temperature",
        None,
    ),
    (
        "max_tokens negative",
        "/v1/completions",
        {"model": MODEL, "prompt": "x", "max_tokens": -5},
        "sk-test-quiet",
        400,
        "max_tokens",
        None,
    ),
    (
        "role unknown",
        "/v1/chat/completions",
        {"model": MODEL, "messages": [{"role": "robot", "content": "x"}]},
        "sk-test-quiet",
        400,
        "messages[0].role",
        None,
    ),
    ("unknown parameter", "/v1/chat/completions", chat(MODEL, beam_width=4), "sk-test-quiet", 400, "beam_width", None),
    (
        "huge body",
        "/v1/chat/completions",
        chat(MODEL, "x" * (2 << 20)),
        "sk-test-quiet",
        413,
        None,
        "request_too_large",
    ),
    ("unknown model", "/v1/chat/completions", chat("gpt-42"), "sk-test-quiet", 404, "model", "model_not_found"),
    ("no key", "/v1/chat/completions", chat(MODEL), None, 401, None, "invalid_api_key"),
    ("bad key", "/v1/chat/completions", chat(MODEL), "sk-not-a-key", 401, None, "invalid_api_key"),
    ("unknown route", "/v1/embeddings", {"model": MODEL, "input": "x"}, "sk-test-quiet", 404, None, None),
    (
        "prompt over the context window",
        "/v1/completions",
        {"model": MODEL, "prompt": [100] * 5000, "max_tokens": 1},
        "sk-test-quiet",
        400,
        "prompt",
        None,
    ),
    (
        "max_tokens over the context window",
        "/v1/chat/completions",
        chat(MODEL, max_tokens=50_000),
        "sk-test-quiet",
        400,
        "max_tokens",
        None,
    ),
]


@pytest.mark.parametrize(("name", "path", "body", "key", "status", "param", "code"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_4xx(router, name, path, body, key, status, param, code):
    reply = asyncio.run(_post(router.base_url + path, body, key))
    assert reply.status == status, reply.body
    assert set(reply.error) == {"message", "type", "param", "code"} and reply.error["message"]
    assert reply.error["param"] == param and reply.error["code"] == code


def test_wrong_method_is_405(router):
    async def main():
        async with aiohttp.ClientSession() as session:
            async with session.get(router.base_url + "/v1/chat/completions") as response:
                return response.status, await response.json()

    status, body = asyncio.run(main())
    assert status == 405 and body["error"]["type"] == "invalid_request_error"


def test_the_router_keeps_serving_after_all_of_it(router):
    async def main():
        async with aiohttp.ClientSession() as session:
            bad = [_post(router.base_url + c[1], c[2], c[3]) for c in CASES] * 3
            await asyncio.gather(*bad)
            good = await post(session, router.base_url + "/v1/chat/completions", chat(MODEL, "Say hi.", max_tokens=4))
            async with session.get(router.base_url + "/health") as health:
                return good, health.status

    good, health = asyncio.run(main())
    assert good.status == 200 and good.body["choices"][0]["message"]["content"]
    assert health == 200 and router.process.poll() is None
    assert "Traceback" not in router.logs()


async def _post(url: str, body, key):
    async with aiohttp.ClientSession() as session:
        return await post(session, url, body if isinstance(body, bytes) else json.dumps(body), key)
