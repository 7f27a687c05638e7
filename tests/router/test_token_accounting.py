"""The router's prompt- and generation-token counters count the same requests: those a runtime worked
on, finished or cut short by a client that left (whose prompt the runtime had already prefilled)."""

import asyncio
import time

import aiohttp
import pytest

from shoal import metric_names as names
from tests.router.harness import RouterInThread, make_config, pool
from tests.router.http_client import auth, chat, post

pytestmark = pytest.mark.integration
MODEL = "fake-model"
PROMPT = "word " * 40  # the router estimates a token per 4 characters: 50, and a few for the role


@pytest.fixture
def router(loop_thread, start_fake):
    fake = start_fake(tokens=4)
    router = RouterInThread(loop_thread, make_config([pool("fake", {"v1": [fake]}, model=MODEL)]))
    router.fake = fake
    yield router
    router.stop()


def counted(router) -> tuple[float, float, float, float]:
    """Prompt tokens, generation tokens, requests answered 200 and requests the client left (499)."""
    labels = {names.LABEL_POOL: "fake", names.LABEL_REVISION: "v1", names.LABEL_QOS_CLASS: "realtime"}
    tenant = {**labels, names.LABEL_TENANT: "quiet"}
    value = router.router.registry.get_sample_value
    return (
        value(names.ROUTER_PROMPT_TOKENS + "_total", tenant) or 0.0,
        value(names.ROUTER_GENERATION_TOKENS + "_total", tenant) or 0.0,
        value(names.ROUTER_REQUESTS + "_total", {**tenant, names.LABEL_STATUS: "200"}) or 0.0,
        value(names.ROUTER_REQUESTS + "_total", {**tenant, names.LABEL_STATUS: "499"}) or 0.0,
    )


def test_a_finished_request_counts_the_runtimes_usage(router):
    async def main():
        async with aiohttp.ClientSession() as session:
            return await post(session, router.base_url + "/v1/chat/completions", chat(MODEL, PROMPT, max_tokens=3))

    usage = asyncio.run(main()).body["usage"]
    assert counted(router) == (usage["prompt_tokens"], usage["completion_tokens"], 1, 0)


def test_a_request_the_client_left_counts_its_prompt_and_the_tokens_streamed(router):
    fake = router.fake
    fake.delay_s = 0.05  # 200 tokens: 10 s unless cancelled

    async def main():
        async with aiohttp.ClientSession() as session:
            body = chat(MODEL, PROMPT, max_tokens=200, stream=True)
            async with session.post(router.base_url + "/v1/chat/completions", json=body, headers=auth()) as response:
                while fake.counters.sent < 5:
                    await response.content.readline()

    asyncio.run(main())
    deadline = time.monotonic() + 5
    while (counted(router)[3] == 0 or fake.counters.in_flight) and time.monotonic() < deadline:
        time.sleep(0.02)
    prompt_tokens, generation_tokens, finished, left = counted(router)
    assert (finished, left) == (0, 1) and fake.counters.cancelled == 1
    assert 50 <= prompt_tokens <= 55  # the router's estimate: the runtime reports usage only when it finishes
    assert 5 <= generation_tokens < 200
