"""/metrics parses as Prometheus text and its counters match the traffic sent."""

import asyncio

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shoal.v1 import runtime_pb2 as pb
from shoal.v1 import runtime_pb2_grpc
from tests.runtime.conftest import SERVER_KV_BLOCKS, SERVER_POOL, SERVER_REVISION
from tests.runtime.test_grpc_e2e import chat_request, wait_until_idle

pytestmark = pytest.mark.integration

LABELS = {"model_name": "SmolLM2-135M-Instruct", "pool": SERVER_POOL, "revision": SERVER_REVISION}


def scrape(server) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value}, parsed by prometheus_client's own parser."""
    samples = {}
    for family in text_string_to_metric_families(server.scrape()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **extra) -> float:
    return samples.get((name, tuple(sorted({**LABELS, **extra}.items()))), 0.0)


def test_counters_and_histograms_match_the_traffic(runtime_server):
    wait_until_idle(runtime_server)
    before = scrape(runtime_server)
    stub = runtime_server.stub()
    prompt_tokens = completion_tokens = computed_tokens = 0
    questions = ["Name a planet.", "Say something kind.", "What is rain?", "Name a bird.", "Spell cat."]
    for question in questions:
        responses = list(stub.Generate(chat_request(question, max_tokens=6, ignore_eos=True)))
        prompt_tokens += responses[-1].usage.prompt_tokens
        completion_tokens += responses[-1].usage.completion_tokens
        # What the model ran on: the prompt less its cached prefix, and every output token but the last.
        usage = responses[-1].usage
        computed_tokens += usage.prompt_tokens - usage.cached_prompt_tokens + usage.completion_tokens - 1
    for bad in (pb.SamplingParams(temperature=-1), pb.SamplingParams(top_k=-5, top_p=0)):
        with pytest.raises(grpc.RpcError):
            list(stub.Generate(pb.GenerateRequest(text="hi", sampling=bad)))

    async def cancel_one():
        async with grpc.aio.insecure_channel(runtime_server.target) as channel:
            call = runtime_pb2_grpc.RuntimeStub(channel).Generate(
                chat_request("Go on and on.", max_tokens=200, ignore_eos=True)
            )
            await call.read()
            call.cancel()

    asyncio.run(cancel_one())
    wait_until_idle(runtime_server)
    after = scrape(runtime_server)

    def delta(name, **extra):
        return value(after, name, **extra) - value(before, name, **extra)

    assert completion_tokens == 5 * 6
    assert delta("shoal:request_success_total", finished_reason="length") == 5
    # The cancelled request is no success, and its cut-short latency and size stay out of the histograms.
    assert delta("shoal:request_success_total", finished_reason="abort") == 0
    assert delta("shoal:request_aborts_total") == 1
    assert delta("shoal:request_errors_total", code="INVALID_ARGUMENT") == 2
    assert delta("shoal:time_to_first_token_seconds_count") == 6
    assert delta("shoal:e2e_request_latency_seconds_count") == 5
    assert delta("shoal:request_prompt_tokens_count") == 5
    cancelled_prompt = delta("shoal:prompt_tokens_total") - prompt_tokens
    assert cancelled_prompt > 0  # the cancelled request's prompt was prefilled
    cancelled_tokens = delta("shoal:generation_tokens_total") - completion_tokens
    assert cancelled_tokens >= 1
    # One inter-token gap per token after the first of each request.
    assert delta("shoal:inter_token_latency_seconds_count") == 5 * 5 + cancelled_tokens - 1
    assert delta("shoal:iteration_tokens_total_sum") > computed_tokens  # and the cancelled request's
    assert delta("shoal:prefix_cache_queries_total") >= prompt_tokens
    assert delta("shoal:prefix_cache_hits_total") > 0  # the chat template's system prompt is shared
    assert value(after, "shoal:num_requests_running") == 0
    assert value(after, "shoal:num_requests_waiting") == 0
    assert value(after, "shoal:kv_cache_usage_perc") == 0
    assert value(after, "shoal:kv_cache_total_blocks") == SERVER_KV_BLOCKS
    assert value(after, "shoal:kv_cache_free_blocks") == SERVER_KV_BLOCKS
