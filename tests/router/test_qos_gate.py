"""The QoS gate's waiting: a full queue refuses at once, a wait past max_queue_wait_s refuses with a
Retry-After from the queue's drain rate, never a reflexive 1 s that invites a retry storm."""

import asyncio
import time

import pytest

from shoal.route_contract import QosConfig
from shoal.router.errors import Overloaded
from shoal.router.qos_gate import QosGate
from shoal.router.traffic.qos import REALTIME

CONFIG = QosConfig(realtime_queue=2, max_queue_wait_s=30.0)


def test_a_full_queue_refuses_at_once_without_waiting():
    async def main():
        gate = QosGate(CONFIG)
        gate.set_capacity(1, batch_share=0.5)
        await gate.acquire(REALTIME)  # runs
        waiters = [asyncio.create_task(gate.acquire(REALTIME)) for _ in range(2)]
        await asyncio.sleep(0)
        started = time.monotonic()
        with pytest.raises(Overloaded) as refused:
            await asyncio.wait_for(gate.acquire(REALTIME), timeout=1.0)  # never near max_queue_wait_s
        seconds = time.monotonic() - started
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        return refused.value, seconds, gate.shed_counts

    refused, seconds, shed = asyncio.run(main())
    assert seconds < 0.1 and shed == {(REALTIME, "queue_full"): 1}
    assert refused.headers["retry-after"] == "30"  # two ahead, nothing finished lately: a window each


def test_a_wait_past_the_limit_refuses_with_the_drain_time():
    now = [0.0]

    async def main():
        gate = QosGate(QosConfig(realtime_queue=4, max_queue_wait_s=0.05), clock=lambda: now[0])
        gate.set_capacity(1, batch_share=0.5)
        for t in range(5):  # one finishes every 2 s
            await gate.acquire(REALTIME)
            now[0] = 2.0 * t
            gate.release(REALTIME)
        await gate.acquire(REALTIME)  # holds the one slot
        with pytest.raises(Overloaded) as refused:
            await gate.acquire(REALTIME)
        return refused.value, gate.queued(REALTIME)

    refused, queued = asyncio.run(main())
    assert queued == 0 and "waited too long" in refused.message
    assert refused.headers["retry-after"] == "2"  # nobody ahead, one slot frees every 2 s
