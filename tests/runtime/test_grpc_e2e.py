"""gRPC end to end against a real `shoal runtime` process: streaming, cancellation, error codes,
concurrent clients, and a draining shutdown."""

import asyncio
import json
import math
import time

import grpc
import pytest

from shoal.v1 import runtime_pb2 as pb
from shoal.v1 import runtime_pb2_grpc
from tests.runtime.conftest import SERVER_KV_BLOCKS, SERVER_POOL, SERVER_REVISION
from tests.runtime.server_process import RuntimeProcess

pytestmark = pytest.mark.integration


def chat_request(content: str, **sampling) -> pb.GenerateRequest:
    sampling.setdefault("temperature", 0.0)
    return pb.GenerateRequest(
        chat=pb.ChatMessages(messages=[pb.ChatMessage(role="user", content=content)]),
        sampling=pb.SamplingParams(**sampling),
    )


def wait_until_idle(server: RuntimeProcess, timeout_s: float = 10.0) -> pb.RuntimeStats:
    deadline = time.monotonic() + timeout_s
    while True:
        stats = server.stats()
        idle = stats.num_requests_running == 0 and stats.num_requests_waiting == 0
        if (idle and stats.kv_blocks_free == stats.kv_blocks_total) or time.monotonic() > deadline:
            return stats
        time.sleep(0.02)


def test_streams_text_deltas_then_usage_and_finish_reason(runtime_server):
    responses = list(runtime_server.stub().Generate(chat_request("What is the capital of France?", max_tokens=32)))
    assert len(responses) > 2
    text = "".join(r.text for r in responses)
    assert "Paris" in text
    final = responses[-1]
    assert final.finish_reason == pb.FINISH_REASON_STOP
    assert all(r.finish_reason == pb.FINISH_REASON_UNSPECIFIED for r in responses[:-1])
    assert final.usage.completion_tokens == sum(len(r.token_ids) for r in responses)
    assert final.usage.prompt_tokens > 10
    assert len({r.request_id for r in responses}) == 1


def test_text_and_token_id_prompts_with_logprobs(runtime_server):
    stub = runtime_server.stub()
    by_text = list(
        stub.Generate(
            pb.GenerateRequest(
                text="The quick brown fox", sampling=pb.SamplingParams(temperature=0, max_tokens=6, logprobs=2)
            )
        )
    )
    tokens = [t for r in by_text for t in r.token_ids]
    assert by_text[-1].finish_reason == pb.FINISH_REASON_LENGTH
    logprobs = [lp for r in by_text for lp in r.logprobs]
    assert [lp.token_id for lp in logprobs] == tokens
    assert all(lp.logprob <= 0 and len(lp.top_logprobs) == 2 for lp in logprobs)
    assert all(lp.top_logprobs[0].token_id == lp.token_id for lp in logprobs)  # greedy picks the best
    prompt_ids = list(range(1000, 1010))
    by_ids = list(
        stub.Generate(
            pb.GenerateRequest(
                token_ids=pb.TokenIds(ids=prompt_ids), sampling=pb.SamplingParams(temperature=0, max_tokens=3)
            )
        )
    )
    assert by_ids[-1].usage.prompt_tokens == 10


def test_seeded_sampling_is_reproducible(runtime_server):
    stub = runtime_server.stub()
    request = chat_request("Tell me a story.", temperature=1.0, seed=7, max_tokens=16)
    first = [t for r in stub.Generate(request) for t in r.token_ids]
    second = [t for r in stub.Generate(request) for t in r.token_ids]
    assert first == second


def test_concurrent_clients_get_the_same_greedy_outputs_as_alone(runtime_server):
    questions = ["Name a color.", "What is 2+2?", "Say hello.", "Name a fruit.", "Count to five.", "What is water?"]

    async def one(stub, question: str) -> list[int]:
        return [t async for r in stub.Generate(chat_request(question, max_tokens=12)) for t in r.token_ids]

    async def main():
        async with grpc.aio.insecure_channel(runtime_server.target) as channel:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            alone = [await one(stub, q) for q in questions]
            together = await asyncio.gather(*(one(stub, q) for q in questions * 2))
            return alone, together

    alone, together = asyncio.run(main())
    assert together == alone + alone


@pytest.mark.parametrize("n", [1, 3])
def test_cancelled_stream_frees_its_kv_blocks_at_once(runtime_server, n):
    async def main():
        async with grpc.aio.insecure_channel(runtime_server.target) as channel:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            request = chat_request("Write a very long essay.", max_tokens=1000, ignore_eos=True)
            request.n = n
            call = stub.Generate(request)
            seen: set[int] = set()
            async for response in call:
                seen.add(response.index)
                if len(seen) == n:  # every choice under way
                    break
            busy = await stub.GetStats(pb.GetStatsRequest())
            call.cancel()
            cancelled_at = time.monotonic()
            while True:
                stats = await stub.GetStats(pb.GetStatsRequest())
                if stats.kv_blocks_free == stats.kv_blocks_total:
                    return busy, stats, time.monotonic() - cancelled_at
                assert time.monotonic() - cancelled_at < 5, stats
                await asyncio.sleep(0.005)

    busy, freed, seconds = asyncio.run(main())
    assert busy.num_requests_running == n and busy.kv_blocks_free < busy.kv_blocks_total
    assert freed.num_requests_running == 0
    assert seconds < 1.0  # one engine step at most


EMBEDDED_VOCAB = 49152  # SmolLM2's; checked against GetModelInfo below
INT32_MAX, INT32_MIN = 2**31 - 1, -(2**31)
BAD_SAMPLING_VALUES = {
    "temperature": (-1, math.nan, math.inf),
    "top_p": (0, 1.5, math.nan, math.inf),
    "top_k": (-2, INT32_MIN),
    "min_p": (-0.1, 1.1, math.nan),
    "repetition_penalty": (0, -1, math.nan, math.inf),
    "presence_penalty": (-2.5, 2.5, math.nan, math.inf),
    "frequency_penalty": (-2.5, 2.5, math.nan, -math.inf),
    "max_tokens": (0, -1, INT32_MAX),
    "logprobs": (-1, 21, INT32_MAX),
    "stop_token_ids": ([-1], [EMBEDDED_VOCAB], [INT32_MAX]),
}


def assert_invalid_argument(server: RuntimeProcess, request: pb.GenerateRequest, field: str) -> None:
    with pytest.raises(grpc.RpcError) as error:
        list(server.stub().Generate(request))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith(field + ":")


@pytest.mark.parametrize(
    ("field", "value"), [(field, value) for field, values in BAD_SAMPLING_VALUES.items() for value in values]
)
def test_out_of_range_sampling_values_are_invalid_argument(runtime_server, field, value):
    request = pb.GenerateRequest(text="hi", sampling=pb.SamplingParams(**{field: value}))
    assert_invalid_argument(runtime_server, request, f"sampling.{field}")


@pytest.mark.parametrize("token_id", [-1, INT32_MIN, EMBEDDED_VOCAB, INT32_MAX])
def test_prompt_token_ids_outside_the_vocabulary_are_invalid_argument(runtime_server, token_id):
    assert runtime_server.stub().GetModelInfo(pb.GetModelInfoRequest()).vocab_size == EMBEDDED_VOCAB
    request = pb.GenerateRequest(token_ids=pb.TokenIds(ids=[1, token_id]))
    assert_invalid_argument(runtime_server, request, "prompt.token_ids")


@pytest.mark.parametrize(
    ("request_kwargs", "field"),
    [
        ({"sampling": pb.SamplingParams()}, "prompt"),
        ({"token_ids": pb.TokenIds(ids=[])}, "prompt"),
        ({"chat": pb.ChatMessages()}, "prompt.chat.messages"),
    ],
)
def test_invalid_prompts_are_refused_naming_the_field(runtime_server, request_kwargs, field):
    assert_invalid_argument(runtime_server, pb.GenerateRequest(**request_kwargs), field)


def test_prompt_longer_than_the_context_window_is_invalid(runtime_server):
    too_long = pb.TokenIds(ids=[100] * (SERVER_KV_BLOCKS * 16 + 1))
    with pytest.raises(grpc.RpcError) as error:
        list(runtime_server.stub().Generate(pb.GenerateRequest(token_ids=too_long)))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "context window" in error.value.details()


def test_health_and_model_info(runtime_server):
    stub = runtime_server.stub()
    assert stub.Health(pb.HealthRequest()).status == pb.HealthResponse.SERVING
    info = stub.GetModelInfo(pb.GetModelInfoRequest())
    assert info.served_model_name == "SmolLM2-135M-Instruct"
    assert (info.architecture, info.block_size, info.max_model_len) == ("llama", 16, SERVER_KV_BLOCKS * 16)
    assert (info.pool, info.revision) == (SERVER_POOL, SERVER_REVISION)
    assert info.has_chat_template and list(info.eos_token_ids) == [2]
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    standard = health_pb2_grpc.HealthStub(grpc.insecure_channel(runtime_server.target))
    assert (
        standard.Check(health_pb2.HealthCheckRequest(service="shoal.v1.Runtime")).status
        == health_pb2.HealthCheckResponse.SERVING
    )


@pytest.fixture(scope="module")
def tiny_queue_server():
    server = RuntimeProcess(
        "--max-num-seqs", "1", "--max-waiting", "1", "--kv-cache-memory", "64MiB", "--shutdown-grace", "30"
    )
    yield server.wait_ready()
    server.stop()


def test_full_waiting_queue_gives_resource_exhausted_with_retry_after(tiny_queue_server):
    async def main():
        async with grpc.aio.insecure_channel(tiny_queue_server.target) as channel:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            running = stub.Generate(chat_request("Write a long essay.", max_tokens=500, ignore_eos=True))
            await running.read()  # running now, holding the only sequence slot
            queued = stub.Generate(chat_request("Hi", max_tokens=4))
            while (await stub.GetStats(pb.GetStatsRequest())).num_requests_waiting < 1:
                await asyncio.sleep(0.01)
            refused = stub.Generate(chat_request("Hi", max_tokens=4))
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await refused.read()
            trailers = dict(await refused.trailing_metadata())
            running.cancel()
            queued_text = "".join([r.text async for r in queued])
            return error.value, trailers, queued_text

    error, trailers, queued_text = asyncio.run(main())
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "queue is full" in error.details()
    assert int(trailers["retry-after"]) >= 1
    assert queued_text  # the queued request was not lost


def test_sigterm_drains_in_flight_requests_then_exits(tiny_queue_server):
    stub = tiny_queue_server.stub()
    stream = stub.Generate(chat_request("Count from one to twenty.", max_tokens=40, ignore_eos=True))
    first = next(stream)
    tiny_queue_server.process.terminate()
    time.sleep(0.5)
    assert stub.Health(pb.HealthRequest()).status == pb.HealthResponse.NOT_SERVING
    with pytest.raises(grpc.RpcError) as refused:
        list(stub.Generate(chat_request("Hi", max_tokens=2)))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    rest = list(stream)
    assert rest[-1].finish_reason == pb.FINISH_REASON_LENGTH
    assert len(first.token_ids) + sum(len(r.token_ids) for r in rest) == 40
    assert tiny_queue_server.process.wait(timeout=30) == 0


def test_a_json_schema_constrains_the_output_and_is_counted(runtime_server):
    schema = '{"type": "object", "properties": {"capital": {"enum": ["Paris", "Rome"]}}, "required": ["capital"]}'
    structured = pb.StructuredOutput(json_schema=schema)
    responses = list(
        runtime_server.stub().Generate(chat_request("The capital of France?", max_tokens=40, structured=structured))
    )
    assert json.loads("".join(r.text for r in responses)) == {"capital": "Paris"}
    assert responses[-1].finish_reason == pb.FINISH_REASON_STOP
    metrics = runtime_server.scrape()
    assert 'shoal:structured_output_requests_total{kind="json_schema"' in metrics
    assert "shoal:grammar_mask_seconds_count" in metrics
    stats = wait_until_idle(runtime_server)
    assert stats.kv_blocks_free == stats.kv_blocks_total


@pytest.mark.parametrize(
    ("structured", "field"),
    [
        (pb.StructuredOutput(json_schema='{"type": "objec"}'), "sampling.structured.json_schema"),
        (pb.StructuredOutput(json_schema="not json"), "sampling.structured.json_schema"),
        (pb.StructuredOutput(regex="(unclosed"), "sampling.structured.regex"),
        (pb.StructuredOutput(grammar="root ::= missing"), "sampling.structured.grammar"),
        (pb.StructuredOutput(json_object=False), "sampling.structured.json_object"),
        (pb.StructuredOutput(), "sampling.structured"),
    ],
)
def test_a_constraint_that_cannot_be_compiled_is_invalid_argument(runtime_server, structured, field):
    request = pb.GenerateRequest(text="hi", sampling=pb.SamplingParams(structured=structured))
    assert_invalid_argument(runtime_server, request, field)


def by_choice(responses) -> dict[int, list]:
    choices: dict[int, list] = {}
    for response in responses:
        choices.setdefault(response.index, []).append(response)
    return choices


def test_n_choices_share_the_prompt_and_follow_their_seeds(runtime_server):
    request = chat_request("Tell me a story.", temperature=1.0, seed=11, max_tokens=12)
    request.n = 3
    first = by_choice(runtime_server.stub().Generate(request))
    again = by_choice(runtime_server.stub().Generate(request))
    assert sorted(first) == [0, 1, 2] and all(c[-1].finish_reason == pb.FINISH_REASON_LENGTH for c in first.values())
    texts = {i: "".join(r.text for r in c) for i, c in first.items()}
    assert texts == {i: "".join(r.text for r in c) for i, c in again.items()}  # seed + i: reproducible
    assert len(set(texts.values())) == 3  # and different from each other
    prompt_tokens = first[0][-1].usage.prompt_tokens
    for index in (1, 2):  # started once choice 0 had its prompt in the prefix cache
        assert first[index][-1].usage.cached_prompt_tokens >= prompt_tokens // 16 * 16 - 16 > 0
    stats = wait_until_idle(runtime_server)
    assert stats.kv_blocks_free == stats.kv_blocks_total


@pytest.mark.parametrize("n", [-1, 17, INT32_MAX])
def test_n_outside_its_range_is_invalid_argument(runtime_server, n):
    request = chat_request("Hi", max_tokens=2)
    request.n = n
    assert_invalid_argument(runtime_server, request, "n")
