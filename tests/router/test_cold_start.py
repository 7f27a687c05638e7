"""The cold-start hold's waiting: held requests wake in arrival order when released, a full queue
refuses at once (429), a wait past max_wait_s is a 503 with Retry-After, and a waiter that is
cancelled (its client left) is no longer held."""

import asyncio
import time

import pytest

from shoal.route_contract import ColdStart
from shoal.router.cold_start import ColdStartHold
from shoal.router.errors import Overloaded, Unavailable
from shoal.router.traffic.hold import TIMED_OUT_RETRY_AFTER_S


async def until(predicate, timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "not within the deadline"
        await asyncio.sleep(0)


def test_released_requests_go_on_in_arrival_order():
    async def main():
        hold = ColdStartHold(ColdStart(max_queued=8, max_wait_s=30.0))
        woken = []

        async def request(name: str):
            await hold.wait("m")
            woken.append(name)

        tasks = []
        for count, name in enumerate("abcde", start=1):
            tasks.append(asyncio.create_task(request(name)))
            await until(lambda count=count: hold.held() == count)  # each held before the next arrives
        hold.release()
        await asyncio.gather(*tasks)
        return woken, hold.held()

    assert asyncio.run(main()) == (list("abcde"), 0)


def test_a_full_queue_refuses_at_once_with_a_retry_after():
    async def main():
        hold = ColdStartHold(ColdStart(max_queued=1, max_wait_s=30.0))
        held = asyncio.create_task(hold.wait("m"))
        await until(lambda: hold.held() == 1)
        started = time.monotonic()
        with pytest.raises(Overloaded) as refused:
            await hold.wait("m")
        seconds = time.monotonic() - started
        hold.release()
        await held
        return refused.value, seconds

    refused, seconds = asyncio.run(main())
    assert seconds < 0.1 and refused.http_status == 429
    assert refused.headers["retry-after"] == "30" and "(at most 1)" in refused.message


def test_a_wait_past_max_wait_s_is_a_503_with_retry_after_and_is_counted():
    async def main():
        hold = ColdStartHold(ColdStart(max_wait_s=0.05))
        with pytest.raises(Unavailable) as refused:
            await hold.wait("chat-model")
        return refused.value, hold.held(), hold.timed_out

    refused, held, timed_out = asyncio.run(main())
    assert (held, timed_out) == (0, 1) and refused.http_status == 503
    assert refused.headers["retry-after"] == str(TIMED_OUT_RETRY_AFTER_S)
    assert "`chat-model`" in refused.message and "0.05s" in refused.message


def test_a_cancelled_waiter_is_no_longer_held_and_a_release_passes_it_over():
    async def main():
        hold = ColdStartHold(ColdStart(max_wait_s=30.0))
        leaving, staying = asyncio.create_task(hold.wait("m")), asyncio.create_task(hold.wait("m"))
        await until(lambda: hold.held() == 2)
        leaving.cancel()
        await until(lambda: hold.held() == 1)
        hold.release()
        await staying
        return leaving.cancelled(), hold.held(), hold.timed_out

    assert asyncio.run(main()) == (True, 0, 0)


def test_turning_the_hold_off_lets_the_held_requests_go_on():
    async def main():
        hold = ColdStartHold(ColdStart(max_wait_s=30.0))
        held = asyncio.create_task(hold.wait("m"))
        await until(lambda: hold.held() == 1)
        hold.reconfigure(ColdStart(enabled=False))
        await asyncio.wait_for(held, 1.0)
        return hold.held()

    assert asyncio.run(main()) == 0
