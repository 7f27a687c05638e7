"""A step that runs out of GPU memory fails the requests in it and nothing else: they end with a
retryable error (RESOURCE_EXHAUSTED over gRPC, with a retry hint), their KV blocks come back and the
blocks the step never wrote leave the prefix cache, each failure is counted, and the engine serves
on with correct outputs. The OOM is raised from inside the model, once, on the CPU: the embedded
model for the engine (its outputs depend on every cached token), the tiny one behind gRPC."""

import asyncio
import contextlib
from dataclasses import replace

import grpc
import pytest
import torch
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shoal import metric_names as names
from shoal.runtime.build import BuiltEngine
from shoal.runtime.engine.async_engine import AsyncEngine
from shoal.runtime.engine.llm_engine import LLMEngine
from shoal.runtime.engine.queue_limits import QueueLimits
from shoal.runtime.engine.request import FinishReason
from shoal.runtime.errors import StepOutOfMemoryError
from shoal.runtime.sampling.params import SamplingParams
from shoal.runtime.server.grpc_service import RuntimeService, Served
from shoal.runtime.server.metrics import RuntimeMetrics
from shoal.v1 import runtime_pb2 as pb
from shoal.v1 import runtime_pb2_grpc
from tests.runtime.engine_harness import build, run_to_completion

BUDGET = 64  # tokens per step: the failing step holds a decode and two prompts, and leaves one waiting
GREEDY = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
# 40 tokens: two full blocks of 16, offered to the prefix cache by the step that fails. Ids in both
# models' vocabularies and clear of the special tokens.
PROMPT_A = list(range(20, 60))
PROMPT_B = list(range(60, 100))
PROMPT_C = list(range(100, 120))
PROMPT_EARLY = list(range(200, 210))
POOL, REVISION = "test-pool", "r1"


def build_tiny(config_dir) -> BuiltEngine:
    return build(config_dir, load_format="dummy", kv_cache_memory=1 << 20, max_num_batched_tokens=BUDGET)


class OutOfMemoryOnce:
    """Stands in for the first layer's MLP; once armed, its next call raises torch.OutOfMemoryError,
    mid-forward: that layer's K/V are written, the next layer's are not."""

    def __init__(self, engine: LLMEngine, monkeypatch: pytest.MonkeyPatch):
        mlp = engine.runner.model.model.layers[0].mlp
        self._forward = mlp.forward
        self.armed = False
        monkeypatch.setattr(mlp, "forward", self)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.armed:
            self.armed = False
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected by the test)")
        return self._forward(x)


@pytest.fixture(scope="module")
def expected(smollm_dir) -> dict[str, list[int]]:
    """Greedy outputs on an engine that never ran out of memory."""
    prompts = {"early": PROMPT_EARLY, "a": PROMPT_A, "c": PROMPT_C}
    engine = build(smollm_dir, max_num_batched_tokens=BUDGET).engine
    return dict(zip(prompts, run_to_completion(engine, list(prompts.values()), GREEDY), strict=True))


class Driver:
    """Steps an engine, gathering each request's tokens and the errors it failed with."""

    def __init__(self, engine: LLMEngine):
        self.engine = engine
        self.tokens: dict[str, list[int]] = {}
        self.finished: dict[str, FinishReason] = {}
        self.failed: dict[str, Exception] = {}

    def add(self, request_id: str, prompt: list[int], sampling: SamplingParams = GREEDY) -> None:
        self.engine.add_request(request_id, prompt, sampling)
        self.tokens[request_id] = []

    def step(self) -> None:
        result = self.engine.step()
        for output in result.outputs:
            self.tokens[output.request_id] += output.new_token_ids
            if output.finished:
                self.finished[output.request_id] = output.finish_reason
        self.failed.update(result.failed)

    def step_until(self, request_id: str, num_tokens: int) -> None:
        while len(self.tokens[request_id]) < num_tokens:
            self.step()


@pytest.mark.integration
@pytest.mark.parametrize("async_scheduling", [False, True], ids=["sync", "async-scheduling"])
def test_an_oom_step_fails_its_requests_only_and_the_engine_serves_on(
    smollm_dir, expected, monkeypatch, async_scheduling
):
    engine = build(smollm_dir, max_num_batched_tokens=BUDGET, async_scheduling=async_scheduling).engine
    oom = OutOfMemoryOnce(engine, monkeypatch)
    run = Driver(engine)
    run.add("early", PROMPT_EARLY)
    run.step_until("early", 2)
    for request_id, prompt in (("a", PROMPT_A), ("b", PROMPT_B), ("c", PROMPT_C)):
        run.add(request_id, prompt)

    oom.armed = True
    run.step()  # early's decode, a's prompt and the start of b's; c waits for budget

    assert set(run.failed) == {"early", "a", "b"}
    for error in run.failed.values():
        assert isinstance(error, StepOutOfMemoryError) and "ran out of GPU memory" in str(error)
    assert all(engine.scheduler.get(r) is None for r in run.failed)
    stats = engine.stats()
    assert stats.kv_blocks_free == stats.kv_blocks_total  # c is not scheduled yet: nothing holds a block
    assert stats.num_oom_errors == 3
    assert stats.num_waiting == 1
    # Under async scheduling the draw of the step before, in flight, is still delivered.
    in_flight = 1 if async_scheduling else 0
    assert run.tokens["early"] == expected["early"][: 2 + in_flight]

    # a's prompt again: its blocks were in the prefix cache with K/V never written; a hit there would
    # change its output.
    run.add("a-again", PROMPT_A)
    while engine.has_unfinished():
        run.step()

    assert run.tokens["c"] == expected["c"]
    assert run.tokens["a-again"] == expected["a"]
    assert set(run.failed) == {"early", "a", "b"}
    stats = engine.stats()
    assert stats.kv_blocks_free == stats.kv_blocks_total
    assert stats.num_oom_errors == 3


@pytest.mark.integration
def test_async_scheduling_keeps_a_request_that_its_draw_in_flight_ends(smollm_dir, expected, monkeypatch):
    """The failing step N+1 held a request that step N's draw, not yet read, ends: it finishes."""
    expected = expected["early"]
    assert expected[2] not in expected[:2]
    engine = build(smollm_dir, max_num_batched_tokens=BUDGET, async_scheduling=True).engine
    oom = OutOfMemoryOnce(engine, monkeypatch)
    run = Driver(engine)
    # Its third token stops it; that draw is in flight once two have been read.
    run.add("early", PROMPT_EARLY, replace(GREEDY, stop_token_ids=(expected[2],)))
    run.add("a", PROMPT_A)
    run.step_until("early", 2)

    oom.armed = True
    run.step()

    assert run.failed.keys() == {"a"}
    assert run.finished == {"early": FinishReason.STOP}
    assert run.tokens["early"] == expected[:3]
    stats = engine.stats()
    assert stats.kv_blocks_free == stats.kv_blocks_total
    assert stats.num_oom_errors == 1


@contextlib.asynccontextmanager
async def serving(built: BuiltEngine):
    """What `shoal runtime` serves, in this process: the gRPC service and a fresh metrics registry."""
    registry = CollectorRegistry()
    metrics = RuntimeMetrics(registry, built.info.served_model_name, POOL, REVISION)
    engine = AsyncEngine(built.engine, QueueLimits(max_waiting=16), observer=metrics)
    metrics.watch_engine(engine.stats, engine.num_waiting)
    engine.start()
    server = grpc.aio.server()
    service = RuntimeService(engine, built.tokenizer, built.info, metrics, Served(POOL, REVISION))
    runtime_pb2_grpc.add_RuntimeServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield runtime_pb2_grpc.RuntimeStub(channel), registry
    finally:
        await server.stop(grace=0)
        await engine.stop()


def sample(registry: CollectorRegistry, name: str, model: str, **extra: str) -> float:
    labels = {names.LABEL_MODEL: model, names.LABEL_POOL: POOL, names.LABEL_REVISION: REVISION, **extra}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return 0.0


def token_request(prompt: list[int], max_tokens: int) -> pb.GenerateRequest:
    return pb.GenerateRequest(
        token_ids=pb.TokenIds(ids=prompt),
        sampling=pb.SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True),
    )


def test_grpc_clients_of_an_oom_step_get_resource_exhausted_and_the_failures_are_counted(tiny_config_dir, monkeypatch):
    expected_c = run_to_completion(build_tiny(tiny_config_dir).engine, [PROMPT_C], GREEDY)[0]
    built = build_tiny(tiny_config_dir)
    oom = OutOfMemoryOnce(built.engine, monkeypatch)
    model = built.info.served_model_name

    async def scenario():
        async with serving(built) as (stub, registry):
            streams = [stub.Generate(token_request(prompt, max_tokens=400)) for prompt in (PROMPT_A, PROMPT_B)]
            for stream in streams:
                await stream.read()  # both are running now, decoding in every step
            oom.armed = True
            errors = []
            for stream in streams:
                with pytest.raises(grpc.aio.AioRpcError) as error:
                    while await stream.read() != grpc.aio.EOF:
                        pass
                errors.append((error.value, dict(await stream.trailing_metadata())))
            stats = await stub.GetStats(pb.GetStatsRequest())
            later = [r async for r in stub.Generate(token_request(PROMPT_C, max_tokens=GREEDY.max_tokens))]
            health = await stub.Health(pb.HealthRequest())
            counted = sample(registry, names.OOM_ERRORS + "_total", model)
            refused = sample(registry, names.REQUEST_ERRORS + "_total", model, code="RESOURCE_EXHAUSTED")
            return errors, stats, later, health, counted, refused

    errors, stats, later, health, counted, refused = asyncio.run(scenario())
    for error, trailers in errors:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "ran out of GPU memory" in error.details()
        assert trailers["retry-after"] == "1"
    assert counted == 2
    assert refused == 2
    assert stats.kv_blocks_free == stats.kv_blocks_total
    assert [t for r in later for t in r.token_ids] == expected_c
    assert later[-1].finish_reason == pb.FINISH_REASON_LENGTH
    assert health.status == pb.HealthResponse.SERVING


def test_the_injected_fault_fails_only_the_steps_above_its_token_limit(tiny_config_dir):
    """--fault-oom-above-tokens (for testing only) lets a CPU runtime play a revision that runs out of
    memory: a step batching more tokens fails as a real out-of-memory step does; smaller ones run."""
    engine = build(tiny_config_dir, load_format="dummy", kv_cache_memory=1 << 20, fault_oom_above_tokens=16).engine
    run = Driver(engine)
    for request_id, prompt in (("short", PROMPT_EARLY), ("long", PROMPT_A), ("short-after", PROMPT_EARLY)):
        run.add(request_id, prompt)  # 10, 40 and 10 tokens, one at a time
        while engine.has_unfinished():
            run.step()
    assert set(run.failed) == {"long"} and isinstance(run.failed["long"], StepOutOfMemoryError)
    assert run.finished == {"short": FinishReason.LENGTH, "short-after": FinishReason.LENGTH}
    stats = engine.stats()
    assert stats.num_oom_errors == 1 and stats.kv_blocks_free == stats.kv_blocks_total
