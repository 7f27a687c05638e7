"""With a KV pool too small for every request at once, requests are preempted and recomputed, and
all of them still finish with exactly the outputs of an unpressured run."""

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shoal.runtime.sampling.params import SamplingParams
from shoal.runtime.server.metrics import RuntimeMetrics
from tests.runtime.engine_harness import build, run_to_completion
from tests.runtime.test_hf_equality import QUESTIONS, chat

pytestmark = pytest.mark.integration

BLOCK_SIZE = 16
POOL_BLOCKS = 14  # 224 tokens; 8 requests of ~80 tokens need about 40 blocks


def counter_value(registry: CollectorRegistry, name: str) -> float:
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"{name} not exported")


@pytest.mark.parametrize("async_scheduling", [False, True], ids=["sync", "async-scheduling"])
def test_preempted_requests_finish_with_the_unpressured_outputs(smollm_dir, smollm_tokenizer, async_scheduling):
    prompts = [chat(smollm_tokenizer, q) for q in QUESTIONS]
    sampling = SamplingParams(temperature=0, max_tokens=40, ignore_eos=True)

    relaxed = build(smollm_dir, max_model_len=POOL_BLOCKS * BLOCK_SIZE)
    expected = run_to_completion(relaxed.engine, prompts, sampling)
    assert relaxed.engine.stats().num_preemptions == 0

    block_bytes = relaxed.engine.runner.kv_caches[0][:, 0].numel() * 4 * len(relaxed.engine.runner.kv_caches)
    pressured = build(
        smollm_dir,
        max_model_len=POOL_BLOCKS * BLOCK_SIZE,
        kv_cache_memory=POOL_BLOCKS * block_bytes,
        async_scheduling=async_scheduling,
    )
    assert pressured.engine.stats().kv_blocks_total == POOL_BLOCKS
    registry = CollectorRegistry()
    metrics = RuntimeMetrics(registry, "smollm", "pool", "rev")
    metrics.watch_engine(pressured.engine.stats, lambda: pressured.engine.stats().num_waiting)

    outputs = run_to_completion(pressured.engine, prompts, sampling)

    assert outputs == expected
    assert all(len(o) == 40 for o in outputs)
    assert counter_value(registry, "shoal:num_preemptions_total") > 0
    stats = pressured.engine.stats()
    assert stats.kv_blocks_free == POOL_BLOCKS
