"""The OpenAI HTTP surface in front of fake runtimes: response and SSE shapes, how runtime errors
map to HTTP, client disconnects cancelling the runtime call, and QoS classes reaching the runtime."""

import asyncio
import time

import aiohttp
import grpc
import pytest

from tests.router.harness import RouterInThread, make_config, pool
from tests.router.http_client import chat, post, stream

pytestmark = pytest.mark.integration
MODEL = "fake-model"


@pytest.fixture
def router(loop_thread, start_fake):
    fake = start_fake(tokens=4, text="ab")
    router = RouterInThread(loop_thread, make_config([pool("fake", {"v1": [fake]}, model=MODEL)]))
    router.fake = fake
    yield router
    router.stop()


def run(coroutine):
    return asyncio.run(coroutine)


async def _session_call(function, *args, **kwargs):
    async with aiohttp.ClientSession() as session:
        return await function(session, *args, **kwargs)


def test_chat_completion_shape_usage_and_headers(router):
    reply = run(_session_call(post, router.base_url + "/v1/chat/completions", chat(MODEL, max_tokens=3)))
    assert reply.status == 200, reply.body
    body = reply.body
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-") and body["model"] == MODEL
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "ababab", "refusal": None}
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 3,
        "total_tokens": 8,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    assert reply.headers["x-shoal-revision"] == "v1" and reply.headers["x-request-id"] in body["id"]
    sent = router.fake.counters.last_request
    assert sent.sampling.max_tokens == 3 and sent.chat.messages[0].content == "Hi" and sent.priority == 0


def test_chat_stream_opens_with_the_role_ends_with_finish_usage_and_done(router):
    status, headers, events = run(
        _session_call(
            stream,
            router.base_url + "/v1/chat/completions",
            chat(MODEL, max_tokens=3, stream=True, stream_options={"include_usage": True}),
        )
    )
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "ababab"
    assert chunks[-2]["choices"][0]["finish_reason"] == "length" and chunks[-2]["usage"] is None
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3


def test_completion_stream_without_usage(router):
    status, _, events = run(
        _session_call(
            stream,
            router.base_url + "/v1/completions",
            {"model": MODEL, "prompt": "x", "max_tokens": 2, "stream": True},
        )
    )
    assert status == 200 and events[-1] == "[DONE]"
    assert all("usage" not in c for c in events[:-1])
    assert "".join(c["choices"][0]["text"] for c in events[:-1]) == "abab"
    assert events[-2]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("code", "details", "status", "param", "error_type"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, "sampling.top_k: must be sane", 400, "top_k", "invalid_request_error"),
        (
            grpc.StatusCode.INVALID_ARGUMENT,
            "prompt: longer than the context window",
            400,
            "messages",
            "invalid_request_error",
        ),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "the waiting queue is full", 429, None, "server_overloaded"),
        (grpc.StatusCode.UNAVAILABLE, "draining", 503, None, "service_unavailable"),
        (grpc.StatusCode.INTERNAL, "boom", 500, None, "server_error"),
    ],
)
def test_runtime_errors_become_openai_errors(router, code, details, status, param, error_type):
    router.fake.error, router.fake.error_message = code, details
    router.fake.error_trailers = (("retry-after", "7"),) if code == grpc.StatusCode.RESOURCE_EXHAUSTED else ()
    reply = run(_session_call(post, router.base_url + "/v1/chat/completions", chat(MODEL)))
    assert reply.status == status
    assert set(reply.error) == {"message", "type", "param", "code"}
    assert reply.error["param"] == param and reply.error["type"] == error_type
    if status == 429:
        assert reply.headers["Retry-After"] == "7"
    assert reply.headers["x-shoal-revision"] == "v1"


def test_a_failure_mid_stream_is_an_sse_error_event(router):
    router.fake.fail_after_tokens = 2
    status, _, events = run(
        _session_call(stream, router.base_url + "/v1/chat/completions", chat(MODEL, max_tokens=10, stream=True))
    )
    assert status == 200
    assert events[-1]["error"]["type"] == "server_error" and "[DONE]" not in events


@pytest.mark.parametrize("streaming", [True, False])
def test_client_disconnect_cancels_the_runtime_call(router, streaming):
    router.fake.delay_s = 0.05  # 200 tokens: 10 s unless cancelled

    async def main():
        async with aiohttp.ClientSession() as session:
            body = chat(MODEL, max_tokens=200, stream=streaming)
            request = asyncio.create_task(
                session.post(
                    router.base_url + "/v1/chat/completions",
                    json=body,
                    headers={"Authorization": "Bearer sk-test-quiet"},
                )
            )
            while router.fake.counters.in_flight == 0:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            if streaming:
                response = await request
                await response.content.readline()
                response.close()  # drops the connection mid-stream
            else:
                request.cancel()
        left_at = time.monotonic()
        while router.fake.counters.in_flight and time.monotonic() - left_at < 5:
            await asyncio.sleep(0.01)
        return time.monotonic() - left_at

    seconds = run(main())
    assert router.fake.counters.cancelled == 1 and router.fake.counters.in_flight == 0
    assert seconds < 1.0
    assert router.fake.counters.sent < 100


def test_qos_class_sets_the_runtime_priority(router):
    async def main():
        async with aiohttp.ClientSession() as session:
            url = router.base_url + "/v1/chat/completions"
            await post(session, url, chat(MODEL))  # tenant default: realtime
            await post(session, url, chat(MODEL), **{"x-shoal-qos": "batch"})
            await post(session, url, chat(MODEL, service_tier="flex"))
            await post(session, url, chat(MODEL, priority=5))
            await post(session, url, chat(MODEL), key="sk-test-batch")  # tenant default: batch
            await post(session, url, chat(MODEL, service_tier="priority"), key="sk-test-batch")
            return await post(session, url, chat(MODEL), **{"x-shoal-qos": "urgent"})

    bad = run(main())
    assert router.fake.counters.priorities == [0, 1, 1, 1, 1, 0]
    assert bad.status == 400


def test_models_list_and_retrieve(router):
    async def main():
        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": "Bearer sk-test-quiet"}
            async with session.get(router.base_url + "/v1/models", headers=headers) as r1:
                listed = await r1.json()
            async with session.get(router.base_url + f"/v1/models/{MODEL}", headers=headers) as r2:
                one = (r2.status, await r2.json())
            async with session.get(router.base_url + "/v1/models/nope", headers=headers) as r3:
                missing = (r3.status, await r3.json())
            async with session.get(router.base_url + "/v1/models") as r4:
                anonymous = r4.status
            return listed, one, missing, anonymous

    listed, one, missing, anonymous = run(main())
    assert [m["id"] for m in listed["data"]] == [MODEL] and listed["object"] == "list"
    assert one[0] == 200 and one[1]["id"] == MODEL and one[1]["object"] == "model"
    assert missing[0] == 404 and missing[1]["error"]["param"] == "model"
    assert anonymous == 401
