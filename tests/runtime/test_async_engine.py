"""The engine thread behind asyncio: streaming, abort on consumer exit, queue limits, failure, stop."""

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry

from shoal.runtime.engine.async_engine import AsyncEngine
from shoal.runtime.engine.queue_limits import QueueLimits
from shoal.runtime.engine.request import FinishReason
from shoal.runtime.errors import EngineUnavailableError, InvalidRequestError, QueueFullError
from shoal.runtime.sampling.params import SamplingParams
from shoal.runtime.server.metrics import RuntimeMetrics
from tests.runtime.engine_harness import build

LONG = SamplingParams(temperature=0, max_tokens=400, ignore_eos=True)


@pytest.fixture(params=[False, True], ids=["sync", "async-scheduling"])
def tiny_engine(tiny_config_dir, request):
    return build(tiny_config_dir, load_format="dummy", kv_cache_memory=1 << 20, async_scheduling=request.param).engine


def run(coroutine_factory, engine, max_waiting: int = 16, observer=None):
    async def main():
        async_engine = AsyncEngine(engine, QueueLimits(max_waiting), observer)
        async_engine.start()
        try:
            return await coroutine_factory(async_engine)
        finally:
            await async_engine.stop()

    return asyncio.run(main())


def test_outputs_stream_until_the_request_finishes(tiny_engine):
    async def scenario(engine):
        return [
            o
            async for o in engine.generate("a", [1, 2, 3], SamplingParams(temperature=0, max_tokens=5, ignore_eos=True))
        ]

    outputs = run(scenario, tiny_engine)
    assert [len(o.new_token_ids) for o in outputs] == [1] * 5
    assert outputs[-1].finished and outputs[-1].finish_reason is FinishReason.LENGTH


def test_a_consumer_that_stops_reading_aborts_its_request_and_frees_blocks(tiny_engine):
    async def scenario(engine):
        stream = engine.generate("a", list(range(1, 60)), LONG)
        await anext(stream)
        await anext(stream)
        assert engine.stats().kv_blocks_free < engine.stats().kv_blocks_total
        await stream.aclose()
        start = time.monotonic()
        while engine.stats().kv_blocks_free < engine.stats().kv_blocks_total or engine.stats().num_running:
            assert time.monotonic() - start < 2
            await asyncio.sleep(0.001)
        return engine.num_in_flight

    assert run(scenario, tiny_engine) == 0


def test_full_queue_refuses_with_a_retry_hint(tiny_engine):
    async def scenario(engine):
        with pytest.raises(QueueFullError) as error:
            await anext(engine.generate("a", [1, 2], LONG))
        return error.value.retry_after_s

    assert run(scenario, tiny_engine, max_waiting=0) >= 1


def test_invalid_and_duplicate_requests_are_refused(tiny_engine):
    async def scenario(engine):
        with pytest.raises(InvalidRequestError, match="prompt.token_ids"):
            await anext(engine.generate("a", [1, 999], LONG))
        first = engine.generate("dup", [1, 2], LONG)
        await anext(first)
        with pytest.raises(InvalidRequestError, match="request_id"):
            await anext(engine.generate("dup", [1, 2], LONG))
        await first.aclose()

    run(scenario, tiny_engine)


def test_engine_failure_fails_requests_and_turns_unhealthy(tiny_engine, monkeypatch):
    def broken(_):
        raise RuntimeError("device lost")

    monkeypatch.setattr(tiny_engine.runner, "launch", broken)

    async def scenario(engine):
        with pytest.raises(EngineUnavailableError, match="device lost"):
            await anext(engine.generate("a", [1, 2], LONG))
        assert not engine.healthy
        with pytest.raises(EngineUnavailableError):
            await anext(engine.generate("b", [1, 2], LONG))

    run(scenario, tiny_engine)


def test_stop_aborts_requests_still_running(tiny_engine):
    async def scenario(engine):
        stream = engine.generate("a", [1, 2, 3], LONG)
        await anext(stream)
        stopping = asyncio.create_task(engine.stop())
        outputs = [o async for o in stream]
        await stopping
        return outputs[-1]

    last = run(scenario, tiny_engine)
    assert last.finished and last.finish_reason is FinishReason.ABORT


def test_aborted_requests_are_counted_apart_from_successes_and_latencies(tiny_engine):
    registry = CollectorRegistry()
    metrics = RuntimeMetrics(registry, "tiny", "pool", "r1")

    async def scenario(engine):
        [o async for o in engine.generate("done", [1, 2], SamplingParams(temperature=0, max_tokens=3))]
        cancelled = engine.generate("cancelled", [1, 2, 3], LONG)
        await anext(cancelled)
        await cancelled.aclose()  # the client left
        draining = engine.generate("draining", [1, 2, 3, 4], LONG)
        await anext(draining)
        stopping = asyncio.create_task(engine.stop())  # the server aborts what is still running
        [o async for o in draining]
        await stopping

    run(scenario, tiny_engine, observer=metrics)

    def sample(name: str, **labels) -> float | None:
        return registry.get_sample_value(name, {"model_name": "tiny", "pool": "pool", "revision": "r1", **labels})

    assert sample("shoal:request_success_total", finished_reason="length") == 1
    assert sample("shoal:request_success_total", finished_reason="abort") is None
    assert sample("shoal:request_aborts_total") == 2
    assert sample("shoal:e2e_request_latency_seconds_count") == 1
    assert sample("shoal:request_generation_tokens_count") == 1
    assert sample("shoal:time_to_first_token_seconds_count") == 3  # every request got a first token
