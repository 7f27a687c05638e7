"""The engine over several ranks on the CPU (gloo): rank 0 schedules and samples, the worker ranks are
processes of their own that follow each step; outputs are those of one rank.

Tensor parallelism: the embedded SmolLM2 has 9 heads and 3 KV heads, so it splits over 3 ranks (2
does not divide them). Pipeline parallelism: its 30 layers split into 2 stages of 15, or 3 of 10. Both together:
a tiny random Llama in 2 stages of 2 ranks.
"""

import multiprocessing
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
import torch.distributed

from shoal.runtime.sampling.params import SamplingParams
from shoal.runtime.speculative.config import SpeculativeConfig
from shoal.v1 import runtime_pb2 as pb
from tests.runtime.engine_harness import build, run_to_completion
from tests.runtime.parallel.paged_greedy import save_random_llama
from tests.runtime.server_process import RuntimeProcess

pytestmark = pytest.mark.integration

TP = 3
TEXTS = [
    "The capital of France is",
    "Write a haiku about the sea.",
    "def fibonacci(n):\n    ",
    "List three colours: red, green,",
]
GREEDY = SamplingParams(temperature=0, max_tokens=16, ignore_eos=True)


@pytest.fixture(autouse=True)
def leaves_no_process_group():
    """A test's ranks are gone after it: the process groups too, or a later one-rank engine would
    find a group whose peers have left."""
    yield
    assert not torch.distributed.is_initialized()


@pytest.fixture(scope="module")
def prompts(smollm_tokenizer) -> list[list[int]]:
    return [smollm_tokenizer.encode(text) for text in TEXTS]


@pytest.fixture(scope="module")
def one_rank_outputs(smollm_dir, prompts) -> list[list[int]]:
    built = build(smollm_dir)
    return run_to_completion(built.engine, prompts, GREEDY)


@pytest.mark.parametrize("async_scheduling", [False, True], ids=["in-turn", "async-scheduling"])
def test_three_ranks_decode_what_one_rank_does(smollm_dir, prompts, one_rank_outputs, async_scheduling):
    """With async scheduling a decode's input token is the draw of the step still in flight: the
    worker ranks take it from rank 0's broadcast, on their side."""
    built = build(smollm_dir, tensor_parallel_size=TP, async_scheduling=async_scheduling)
    try:
        staggered = run_to_completion(built.engine, prompts, GREEDY, arrival_steps=[0, 0, 3, 5])
        assert staggered == one_rank_outputs
        assert built.engine.stats().kv_blocks_free == built.engine.stats().kv_blocks_total
    finally:
        built.close()
    assert [p.exitcode for p in built.parallel.workers.processes] == [0] * (TP - 1)


def test_drafts_verified_across_ranks_change_nothing(smollm_dir, prompts, one_rank_outputs):
    built = build(smollm_dir, tensor_parallel_size=TP, speculative=SpeculativeConfig(method="ngram"))
    try:
        repeats = [p + p for p in prompts]  # prompt lookup finds drafts in a repeated prompt
        drafted = run_to_completion(built.engine, repeats, GREEDY)
        assert built.engine.stats().drafts.num_draft_tokens > 0
    finally:
        built.close()
    plain = build(smollm_dir)
    assert drafted == run_to_completion(plain.engine, repeats, GREEDY)


@pytest.mark.parametrize(
    ("stages", "async_scheduling"),
    [(2, False), (2, True), (3, True)],
    ids=["2-stages-in-turn", "2-stages-async-scheduling", "3-stages-async-scheduling"],
)
def test_pipeline_stages_decode_what_one_rank_does(smollm_dir, prompts, one_rank_outputs, stages, async_scheduling):
    """With async scheduling a micro-batch per stage is in flight (the scheduler's side is in
    tests/runtime/test_micro_batches.py); a middle stage receives and sends on."""
    built = build(smollm_dir, pipeline_parallel_size=stages, async_scheduling=async_scheduling)
    try:
        assert built.info.pipeline_parallel_size == stages
        staggered = run_to_completion(built.engine, prompts, GREEDY, arrival_steps=[0, 0, 3, 5])
        assert staggered == one_rank_outputs
        stats = built.engine.stats()
        assert stats.kv_blocks_free == stats.kv_blocks_total
    finally:
        built.close()
    assert [p.exitcode for p in built.parallel.workers.processes] == [0] * (stages - 1)


def test_two_stages_of_two_tensor_parallel_ranks_decode_what_one_rank_does(tmp_path):
    """A tiny random Llama (4 heads, 2 KV heads, 2 layers): 4 ranks, each a stage's half of its heads."""
    model_dir = save_random_llama(tmp_path / "tiny", num_hidden_layers=2)
    prompts = [[(7 * i + 3 * n) % 255 for i in range(5 + 9 * n)] for n in range(4)]
    expected = run_to_completion(build(model_dir).engine, prompts, GREEDY)
    built = build(model_dir, tensor_parallel_size=2, pipeline_parallel_size=2)
    try:
        assert run_to_completion(built.engine, prompts, GREEDY, arrival_steps=[0, 0, 3, 5]) == expected
    finally:
        built.close()
    assert [p.exitcode for p in built.parallel.workers.processes] == [0, 0, 0]


def test_a_split_the_model_does_not_allow_is_refused_before_any_rank_starts(smollm_dir):
    with pytest.raises(ValueError, match="tensor parallel size 2 must divide num_attention_heads"):
        build(smollm_dir, tensor_parallel_size=2)
    with pytest.raises(ValueError, match="pipeline parallel size 31 exceeds the model.s 30 layers"):
        build(smollm_dir, pipeline_parallel_size=31)
    assert not multiprocessing.active_children()


def test_a_killed_rank_makes_the_runtime_unhealthy_at_once_and_it_exits(smollm_dir):
    server = RuntimeProcess("--model", str(smollm_dir), "--tensor-parallel-size", str(TP), "--kv-cache-memory", "64MiB")
    try:
        server.wait_ready()
        request = pb.GenerateRequest(text="The capital of France is", sampling=pb.SamplingParams(max_tokens=8))
        assert "Paris" in "".join(r.text for r in server.stub().Generate(request))
        workers = _worker_pids(server.process.pid)
        assert len(workers) == TP - 1
        os.kill(workers[0], signal.SIGKILL)
        killed_at = time.monotonic()
        status, body = _wait_for_health_failure(server, timeout_s=5)
        assert status == 503 and f"(pid {workers[0]}) exited" in body, body
        with pytest.raises(grpc.RpcError) as refused:
            list(server.stub().Generate(request))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert server.process.wait(timeout=30) == 1
        assert time.monotonic() - killed_at < 30
        assert f"(pid {workers[0]}) exited with code -9" in server.logs()
    finally:
        server.stop()


def _worker_pids(pid: int) -> list[int]:
    """The runtime's rank processes (multiprocessing's spawned children; not its resource tracker),
    started by whichever of its threads built the engine."""
    children = [c for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
    return [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def _wait_for_health_failure(server: RuntimeProcess, timeout_s: float) -> tuple[int, str]:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/health", timeout=1) as response:
                status, body = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        if time.monotonic() > deadline:
            return status, body
        time.sleep(0.05)
