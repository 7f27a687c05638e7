"""The worker's own state, keyed by request id: seeded generators live as long as their request."""

import pytest

from shoal.runtime.sampling.params import SamplingParams
from tests.runtime.engine_harness import build, run_to_completion

SEEDED = SamplingParams(temperature=1.0, seed=5, max_tokens=12, ignore_eos=True)


@pytest.mark.parametrize("async_scheduling", [False, True], ids=["sync", "async-scheduling"])
def test_a_request_id_used_again_gets_a_fresh_generator(tiny_config_dir, async_scheduling):
    """The worker drops a finished request's generator when the next step reports it finished; a
    generator kept would carry on from where the first request left it."""
    engine = build(
        tiny_config_dir, load_format="dummy", kv_cache_memory=1 << 20, async_scheduling=async_scheduling
    ).engine
    first = run_to_completion(engine, [[1, 2, 3]], SEEDED)
    again = run_to_completion(engine, [[1, 2, 3]], SEEDED)  # the same id, "0"
    assert again == first


def test_seeded_draws_do_not_depend_on_the_batch(tiny_config_dir):
    alone = run_to_completion(
        build(tiny_config_dir, load_format="dummy", kv_cache_memory=1 << 20).engine, [[1, 2, 3]], SEEDED
    )
    others = [[7, 8, 9, 10], [11, 12]]
    crowded = run_to_completion(
        build(tiny_config_dir, load_format="dummy", kv_cache_memory=1 << 20).engine,
        [*others, [1, 2, 3]],
        SEEDED,
    )
    assert crowded[-1] == alone[0]
