"""Must show 3: with the runtime saturated by batch load, realtime TTFT stays within a set factor of
its unloaded value, while batch still makes progress. Numbers are printed (pytest -s shows them).

One real runtime behind `shoal router`. Batch clients keep far more requests going than the pool
may run; the router holds batch to its share of the pool's concurrency (and passes it to the runtime
at a lower priority), so a realtime request finds a free slot at the router and goes first in the
runtime's queue. TTFT is measured by the client, to the first streamed token.
"""

import asyncio
import time

import aiohttp
import pytest

from shoal.router.traffic.windows import quantile
from tests.router.conftest import MODEL
from tests.router.harness import RouterProcess, get_json, pool
from tests.router.http_client import auth

pytestmark = pytest.mark.integration
TTFT_FACTOR = 3.0  # loaded realtime p99 TTFT may be at most this times the unloaded p99
MEDIAN_FACTOR = 4.0  # and at most this times the unloaded median, so one slow unloaded sample cannot loosen the bound
BATCH_CLIENTS = 16
REALTIME_SAMPLES = 30
QOS = {
    "max_concurrency_per_endpoint": 8,
    "batch_share_max": 0.5,
    "batch_share_min": 0.125,
    "realtime_ttft_target_s": 0.5,
    "max_queue_wait_s": 60,
}


@pytest.fixture(scope="module")
def router(stable_runtime):
    router = RouterProcess([pool("chat", {"r1": [stable_runtime]}, model=MODEL, qos=QOS)]).wait_ready()
    yield router
    assert router.stop() == 0, router.logs()


async def ttft(session: aiohttp.ClientSession, url: str, i: int) -> float:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Say a word. ({i})"}],
        "max_tokens": 2,
        "stream": True,
        "temperature": 0,
    }
    started = time.monotonic()
    async with session.post(url, json=body, headers=auth("sk-test-quiet")) as response:
        assert response.status == 200
        async for line in response.content:
            if b'"content":"' in line and b'"content":""' not in line:
                first = time.monotonic() - started
                break
        await response.read()
    return first


async def realtime_ttfts(url: str, n: int) -> list[float]:
    async with aiohttp.ClientSession() as session:
        values = []
        for i in range(n):
            values.append(await ttft(session, url, i))
            await asyncio.sleep(0.05)
        return values


async def batch_client(session: aiohttp.ClientSession, url: str, stop: asyncio.Event, done: list, shed: list) -> None:
    body = {"model": MODEL, "prompt": "Write a long story about the sea.", "max_tokens": 32, "ignore_eos": True}
    while not stop.is_set():
        async with session.post(url, json=body, headers=auth("sk-test-batch")) as response:
            await response.read()
            (done if response.status == 200 else shed).append(time.monotonic())
            if response.status == 429:
                await asyncio.sleep(0.5)


def test_realtime_ttft_holds_under_batch_saturation(router):
    chat_url, completions_url = router.base_url + "/v1/chat/completions", router.base_url + "/v1/completions"

    async def main():
        await realtime_ttfts(chat_url, 5)  # warm up
        unloaded = await realtime_ttfts(chat_url, REALTIME_SAMPLES)
        stop, done, shed = asyncio.Event(), [], []
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            clients = [
                asyncio.create_task(batch_client(session, completions_url, stop, done, shed))
                for _ in range(BATCH_CLIENTS)
            ]
            await asyncio.sleep(4)  # saturate
            state = get_json(router.admin_url + "/admin/pools/chat")[1]["qos"]
            measuring_from = time.monotonic()
            loaded = await realtime_ttfts(chat_url, REALTIME_SAMPLES)
            batch_during = sum(t >= measuring_from for t in done)
            measured_s = time.monotonic() - measuring_from
            stop.set()
            for client in clients:
                client.cancel()  # their requests in flight are cancelled at the runtime too
            await asyncio.gather(*clients, return_exceptions=True)
        return unloaded, loaded, state, batch_during, measured_s, len(shed)

    unloaded, loaded, state, batch_during, measured_s, shed = asyncio.run(main())
    p50_u, p99_u, p50_l, p99_l = (
        quantile(unloaded, 0.5),
        quantile(unloaded, 0.99),
        quantile(loaded, 0.5),
        quantile(loaded, 0.99),
    )
    print(
        f"\nrealtime TTFT unloaded: p50 {p50_u * 1000:.0f} ms, p99 {p99_u * 1000:.0f} ms; "
        f"under batch load: p50 {p50_l * 1000:.0f} ms, p99 {p99_l * 1000:.0f} ms; loaded p99 / unloaded p99 "
        f"{p99_l / p99_u:.2f} "
        f"(limit {TTFT_FACTOR}), / unloaded p50 {p99_l / p50_u:.2f} (limit {MEDIAN_FACTOR})\n"
        f"batch while measuring: {batch_during} requests finished in {measured_s:.1f}s "
        f"({batch_during / measured_s:.2f}/s); "
        f"pool state under load: {state}; batch requests shed: {shed}"
    )
    assert (
        state["queued"]["batch"] > 0 and state["in_flight"]["batch"] <= state["batch_limit"]
    )  # saturated, held to its share
    assert p99_l <= TTFT_FACTOR * p99_u and p99_l <= MEDIAN_FACTOR * p50_u
    assert batch_during > 0
