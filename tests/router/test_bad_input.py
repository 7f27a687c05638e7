"""Must show 6: bad input gets a clear 4xx in OpenAI's error shape, and the router keeps serving:
malformed JSON, wrong types, huge bodies, unknown models and routes, bad keys, requests the runtime
refuses."""

import asyncio
import json
import logging
import secrets

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from shoal.router.openai.errors import QuietAppRunner
from tests.router import bad_values
from tests.router.conftest import MODEL
from tests.router.fake_runtime import FakeRuntime
from tests.router.harness import RouterInThread, RouterProcess, make_config, pool
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
    (
        "max_tokens over int32",
        "/v1/chat/completions",
        chat(MODEL, max_tokens=2**31),
        "sk-test-quiet",
        400,
        "max_tokens",
        None,
    ),
    ("top_k over int32", "/v1/chat/completions", chat(MODEL, top_k=2**31), "sk-test-quiet", 400, "top_k", None),
    (
        "stop token id over int32",
        "/v1/chat/completions",
        chat(MODEL, stop_token_ids=[2**31]),
        "sk-test-quiet",
        400,
        "stop_token_ids",
        None,
    ),
    (
        "prompt token id over int32",
        "/v1/completions",
        {"model": MODEL, "prompt": [1, 2**31]},
        "sk-test-quiet",
        400,
        "prompt",
        None,
    ),
    (
        "lone surrogate in content",
        "/v1/chat/completions",
        chat(MODEL, "hi \ud800"),
        "sk-test-quiet",
        400,
        "messages[0].content",
        None,
    ),
    (
        "lone surrogate in a stop",
        "/v1/chat/completions",
        chat(MODEL, stop=["\udfff"]),
        "sk-test-quiet",
        400,
        "stop",
        None,
    ),
    (
        "lone surrogate in the prompt",
        "/v1/completions",
        {"model": MODEL, "prompt": "\ud83d"},
        "sk-test-quiet",
        400,
        "prompt",
        None,
    ),
    (
        "temperature NaN",
        "/v1/chat/completions",
        chat(MODEL, temperature=float("nan")),
        "sk-test-quiet",
        400,
        "temperature",
        None,
    ),
    ("five stops", "/v1/chat/completions", chat(MODEL, stop=list("abcde")), "sk-test-quiet", 400, "stop", None),
    (
        "integer of 5000 digits",
        "/v1/chat/completions",
        b'{"seed": ' + b"9" * 5000 + b"}",
        "sk-test-quiet",
        400,
        None,
        None,
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


# The same refusals, fast: a router in this process in front of a fake runtime, driven with many
# generated bad values; each must be a 400 naming its field that never reaches the runtime, counted
# as a 400 (never 499 or 5xx), and no key may show in a body or a log line.


@pytest.fixture(scope="module")
def fast_router(loop_thread):
    fake = loop_thread.run(FakeRuntime(tokens=2).start())
    router = RouterInThread(loop_thread, make_config([pool("fake", {"v1": [fake]}, model="fake-model")]))
    router.fake = fake
    yield router
    router.stop()
    loop_thread.run(fake.stop())


def fast_post(router, path: str, body, key="sk-test-quiet"):
    async def main():
        async with aiohttp.ClientSession() as session:
            return await post(session, router.base_url + path, body, key)

    return asyncio.run(main())


def assert_refused(router, reply, param):
    assert reply.status == 400, reply.body
    assert set(reply.error) == {"message", "type", "param", "code"} and reply.error["message"]
    assert reply.error["type"] == "invalid_request_error" and reply.error["param"] == param
    assert router.fake.counters.requests == 0


@settings(max_examples=60, deadline=None)
@given(data=st.data(), field=st.sampled_from(sorted(bad_values.CHAT)))
def test_any_bad_chat_field_is_a_400_naming_it(fast_router, data, field):
    body = {**chat("fake-model"), field: data.draw(bad_values.CHAT[field], label=field)}
    if field == "top_logprobs":
        body["logprobs"] = True
    assert_refused(fast_router, fast_post(fast_router, "/v1/chat/completions", json.dumps(body)), field)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), field=st.sampled_from(sorted(bad_values.COMPLETIONS)))
def test_any_bad_completions_field_is_a_400_naming_it(fast_router, data, field):
    body = {"model": "fake-model", "prompt": "x", field: data.draw(bad_values.COMPLETIONS[field], label=field)}
    assert_refused(fast_router, fast_post(fast_router, "/v1/completions", json.dumps(body)), field)


@settings(max_examples=40, deadline=None)
@given(bad=bad_values.MESSAGES, prompt=bad_values.PROMPTS)
def test_bad_messages_and_prompts_are_400s_naming_them(fast_router, bad, prompt):
    messages, param = bad
    reply = fast_post(fast_router, "/v1/chat/completions", json.dumps({"model": "fake-model", "messages": messages}))
    assert_refused(fast_router, reply, param)
    reply = fast_post(fast_router, "/v1/completions", json.dumps({"model": "fake-model", "prompt": prompt}))
    assert_refused(fast_router, reply, "prompt")


def test_refused_input_is_counted_as_a_400_never_499_or_5xx(fast_router):
    for body in (chat("fake-model", max_tokens=2**31), chat("fake-model", "\ud800"), chat("fake-model", top_k=2**40)):
        assert fast_post(fast_router, "/v1/chat/completions", json.dumps(body)).status == 400
    assert fast_post(fast_router, "/v1/completions", {"model": "fake-model", "prompt": [2**31]}).status == 400
    metrics = fast_router.loop.call(lambda: generate_latest(fast_router.router.registry).decode())
    statuses = {line.split('status="')[1].split('"')[0] for line in metrics.splitlines() if 'status="' in line}
    assert "400" in statuses and not statuses & {"499", "500"}


HEADER_CASES = [
    # (what, raw Authorization value with {key} for the key)
    ("control character after the key", b"Bearer {key}\x01"),
    ("DEL after the key", b"Bearer {key}\x7f"),
    ("a non-ASCII byte", b"Bearer {key}\xe9"),
    ("invalid UTF-8", b"Bearer \xff{key}"),
    ("longer than we accept", b"Bearer {key}" + b"A" * 2000),
    ("longer than aiohttp reads", b"Bearer {key}" + b"A" * 9000),
    ("a NUL inside", b"Bearer sk-\x00{key}"),
    ("tab before the key", b"Bearer\t{key}\x02"),
]


@pytest.mark.parametrize(("what", "value"), HEADER_CASES, ids=[c[0] for c in HEADER_CASES])
def test_a_malformed_authorization_header_is_never_echoed_or_logged(fast_router, caplog, what, value):
    caplog.set_level(logging.DEBUG)
    key = "sk-live-" + secrets.token_hex(16)
    raw = value.replace(b"{key}", key.encode())
    # QuietAppRunner (router/openai/errors.py) serves the router's own HTTP app: its servers answer
    # what aiohttp cannot parse (the last cases) without quoting it.
    status, body = fast_router.loop.run(_raw_request(fast_router.router.http_app(), raw))
    assert 400 <= status < 500 and json.loads(body)["error"]["message"], body
    text = body.decode(errors="replace") + caplog.text
    assert not any(key[i : i + 8] in text for i in range(len(key) - 7)), what


async def _raw_request(app, authorization: bytes) -> tuple[int, bytes]:
    runner = QuietAppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        body = json.dumps(chat("fake-model")).encode()
        reader, writer = await asyncio.open_connection(*site._server.sockets[0].getsockname()[:2])
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\n"
            b"Authorization: "
            + authorization
            + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
            + body
        )
        response = await reader.read()
        writer.close()
    finally:
        await runner.cleanup()
    head, _, content = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), content
