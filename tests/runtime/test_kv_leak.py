"""No KV leak: 200 requests over gRPC, some cancelled by the client mid-stream, some ended by stop
strings; afterwards every block is free again, and the cached prefixes left behind are evictable."""

import asyncio
import random

import grpc
import pytest

from shoal.v1 import runtime_pb2 as pb
from shoal.v1 import runtime_pb2_grpc
from tests.runtime.conftest import SERVER_KV_BLOCKS
from tests.runtime.test_grpc_e2e import wait_until_idle

pytestmark = pytest.mark.integration

TOPICS = ["the sea", "a cat", "mountains", "the city at night", "a robot", "friendship", "autumn", "coffee"]
STOPS = [".", " the", "\n", ",", " and"]


def random_request(rng: random.Random) -> pb.GenerateRequest:
    sampling = pb.SamplingParams(
        temperature=rng.choice([0.0, 0.8]), max_tokens=rng.randint(4, 32), seed=rng.randint(0, 10**6)
    )
    if rng.random() < 0.5:
        sampling.stop.extend(rng.sample(STOPS, rng.randint(1, 2)))
    content = f"Write about {rng.choice(TOPICS)}." + " Be brief." * rng.randint(0, 3)
    return pb.GenerateRequest(
        chat=pb.ChatMessages(messages=[pb.ChatMessage(role="user", content=content)]), sampling=sampling
    )


async def one(stub, request: pb.GenerateRequest, cancel_after: int | None) -> str:
    call = stub.Generate(request)
    received = 0
    try:
        async for response in call:
            received += 1
            if cancel_after is not None and received >= cancel_after:
                call.cancel()
                return "cancelled"
            if response.finish_reason:
                if response.stop_reason in STOPS:
                    return "stop string"
                return pb.FinishReason.Name(response.finish_reason)
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.CANCELLED:
            return "cancelled"
        raise
    return "cancelled" if cancel_after == 0 else "ended"


async def run_traffic(target: str, rng: random.Random, total: int, concurrency: int) -> list[str]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        semaphore = asyncio.Semaphore(concurrency)

        async def guarded(request, cancel_after):
            async with semaphore:
                if cancel_after == 0:  # cancel before the first token, maybe before the engine takes it
                    call = stub.Generate(request)
                    await asyncio.sleep(rng.random() * 0.05)
                    call.cancel()
                    return "cancelled"
                return await one(stub, request, cancel_after)

        jobs = []
        for _ in range(total):
            cancel_after = rng.choice([None, None, 0, 1, 3, 6]) if rng.random() < 0.4 else None
            jobs.append(guarded(random_request(rng), cancel_after))
        return await asyncio.gather(*jobs)


def test_blocks_return_to_the_pool_after_cancellations_and_stop_strings(runtime_server):
    before = wait_until_idle(runtime_server)
    assert before.kv_blocks_free == before.kv_blocks_total == SERVER_KV_BLOCKS

    outcomes = asyncio.run(run_traffic(runtime_server.target, random.Random(1234), total=200, concurrency=24))

    assert outcomes.count("cancelled") >= 40
    assert outcomes.count("stop string") >= 20 and outcomes.count("FINISH_REASON_LENGTH") >= 20
    after = wait_until_idle(runtime_server)
    assert (after.num_requests_running, after.num_requests_waiting) == (0, 0)
    assert after.kv_blocks_free == after.kv_blocks_total
    assert after.kv_blocks_cached > 0

    # The cached prefixes are evictable: a prompt needing nearly the whole pool still runs.
    big_prompt = [random.Random(5).randrange(1000, 40000) for _ in range((SERVER_KV_BLOCKS - 2) * 16)]
    request = pb.GenerateRequest(
        token_ids=pb.TokenIds(ids=big_prompt), sampling=pb.SamplingParams(max_tokens=8, ignore_eos=True, temperature=0)
    )
    responses = list(runtime_server.stub().Generate(request))
    assert responses[-1].finish_reason == pb.FINISH_REASON_LENGTH
    final = wait_until_idle(runtime_server)
    assert final.kv_blocks_free == final.kv_blocks_total
