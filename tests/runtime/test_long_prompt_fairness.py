"""On a CPU with its default token budget, a long batch prompt is prefilled in chunks, and a short
realtime request that arrives meanwhile gets its first token while the long prompt still prefills."""

import pytest

from shoal.runtime.config import CPU_MAX_NUM_BATCHED_TOKENS
from shoal.runtime.sampling.params import SamplingParams
from tests.runtime.engine_harness import build

pytestmark = pytest.mark.integration

LONG_PROMPT_TOKENS = 2100


def test_short_realtime_request_gets_its_first_token_while_a_long_batch_prompt_prefills(smollm_dir):
    engine = build(smollm_dir, kv_cache_memory=128 << 20).engine  # room for the long prompt; budget: the default
    assert engine.scheduler.config.max_num_batched_tokens == CPU_MAX_NUM_BATCHED_TOKENS
    greedy = SamplingParams(temperature=0, max_tokens=2, ignore_eos=True)
    long = engine.add_request("batch", [100 + i % 1000 for i in range(LONG_PROMPT_TOKENS)], greedy, priority=1)
    engine.step()
    assert long.num_computed_tokens == CPU_MAX_NUM_BATCHED_TOKENS  # one chunk so far

    engine.add_request("realtime", [1, 2, 3, 4, 5, 6, 7, 8], greedy, priority=0)
    first_tokens = [output.request_id for output in engine.step().outputs if output.new_token_ids]

    assert first_tokens == ["realtime"]  # in the very next step
    assert long.num_output_tokens == 0 and long.num_computed_tokens < LONG_PROMPT_TOKENS  # still prefilling
