"""The warm-up before serving (runtime/warmup.py), the startup breakdown (runtime/startup.py) and the
compile cache: the warm-up runs on a CPU here only because it is asked for (nothing compiles there)."""

import argparse
import os
from collections import Counter

import pytest
import torch
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from shoal.runtime.build import BuiltEngine, build_engine
from shoal.runtime.cli import add_arguments, configs_from_args
from shoal.runtime.config import EngineConfig
from shoal.runtime.engine.messages import StepInput
from shoal.runtime.sampling.params import SamplingParams
from shoal.runtime.server.metrics import RuntimeMetrics
from shoal.runtime.startup import StartupClock
from shoal.runtime.warmup import SAMPLING, EngineLimits, plan, warm_up
from tests.runtime.engine_harness import run_to_completion

MAX_NUM_SEQS = 8
TOKEN_BUDGET = 64


def build(model_dir, **overrides) -> BuiltEngine:
    settings = {
        "model": str(model_dir),
        "load_format": "dummy",
        "kv_cache_memory": 1 << 20,
        "max_num_seqs": MAX_NUM_SEQS,
        "max_num_batched_tokens": TOKEN_BUDGET,
    }
    return build_engine(EngineConfig(**{**settings, **overrides}))


def test_the_served_engine_starts_fresh_after_the_warm_up(tiny_config_dir):
    built = build(tiny_config_dir, warmup=True)
    assert "warmup" in built.info.startup.seconds
    stats = built.engine.stats()
    assert (stats.num_running, stats.num_waiting) == (0, 0)
    assert stats.kv_blocks_free == stats.kv_blocks_total and stats.kv_blocks_cached == 0
    assert stats.num_preemptions == stats.prefix_cache_queries == stats.prefix_cache_hits == stats.num_oom_errors == 0
    untouched = torch.Generator().manual_seed(0).get_state()
    assert torch.equal(built.engine.runner.sampler.generator.get_state(), untouched)


def test_outputs_are_the_same_with_or_without_the_warm_up(tiny_config_dir):
    prompts = [[5, 17, 99, 3, 42], list(range(1, 40))]
    kinds = [
        SamplingParams(temperature=0, max_tokens=12, ignore_eos=True),
        SamplingParams(temperature=1.0, seed=7, max_tokens=12, ignore_eos=True),
        SamplingParams(temperature=1.0, top_p=0.9, max_tokens=12, ignore_eos=True),  # the engine's own generator
    ]
    outputs = {}
    for warmup in (False, True):
        engine = build(tiny_config_dir, warmup=warmup).engine
        outputs[warmup] = [run_to_completion(engine, prompts, sampling) for sampling in kinds]
    assert outputs[True] == outputs[False]


def test_the_warm_up_runs_the_step_shapes_the_scheduler_makes(tiny_config_dir):
    engine = build(tiny_config_dir).engine
    steps: list[StepInput] = []
    launch = engine.runner.launch
    engine.runner.launch = lambda step: steps.append(step) or launch(step)
    warm_up(engine, engine.runner.sampler.generator, None)
    assert not engine.has_unfinished()

    def counts(step: StepInput) -> tuple[int, int]:
        decodes = sum(row.num_new_tokens == 1 for row in step.rows)
        return decodes, len(step.rows) - decodes

    shapes = [counts(step) for step in steps]
    assert (0, 1) in shapes  # a lone prefill
    assert any(r.num_new_tokens == TOKEN_BUDGET and r.sampling is None for s in steps for r in s.rows)  # chunked
    assert any(r.num_new_tokens > 1 and r.start > 0 for s in steps for r in s.rows)  # past a chunk or cached prefix
    mixed = {decodes for decodes, prefills in shapes if decodes and prefills}
    assert len(mixed) >= MAX_NUM_SEQS // 2, mixed  # decodes pile up beside new prefills
    assert len({decodes for decodes, prefills in shapes if not prefills}) >= MAX_NUM_SEQS // 2  # decode batches
    sampled = [r.sampling for s in steps for r in s.rows if r.sampling is not None]
    for name, kind in SAMPLING.items():
        if name != "json":  # no tokenizer, no grammar
            assert any(_same_kind(p, kind) for p in sampled), name


def _same_kind(sampling: SamplingParams, kind: SamplingParams) -> bool:
    fields = ("temperature", "top_p", "top_k", "min_p", "logprobs", "repetition_penalty", "structured")
    return all(getattr(sampling, f) == getattr(kind, f) for f in fields)


@pytest.mark.parametrize(
    "limits",
    [
        EngineLimits(token_budget=8192, max_num_seqs=256, max_model_len=131072, kv_capacity=800_000, block_size=16),
        EngineLimits(token_budget=64, max_num_seqs=4, max_model_len=100, kv_capacity=112, block_size=16),
        EngineLimits(token_budget=8192, max_num_seqs=2, max_model_len=6, kv_capacity=16, block_size=16),
    ],
)
def test_every_planned_request_fits_the_engine(limits):
    waves = plan(limits, with_grammar=True)
    requests = [r for wave in waves for r in wave]
    assert all(1 <= r.prompt_len and r.prompt_len + r.sampling.max_tokens <= limits.max_model_len for r in requests)
    assert all(r.sampling.ignore_eos and r.sampling.seed is None for r in requests)
    ramp = waves[-1]
    assert len(ramp) == limits.max_num_seqs
    assert [r.arrival_step for r in ramp] == sorted(r.arrival_step for r in ramp)


def test_the_ramp_fills_at_most_half_the_kv_pool():
    limits = EngineLimits(token_budget=8192, max_num_seqs=256, max_model_len=131072, kv_capacity=100_000, block_size=16)
    ramp = plan(limits, with_grammar=False)[-1]
    assert sum(r.prompt_len + r.sampling.max_tokens + limits.block_size for r in ramp) <= limits.kv_capacity / 2


def test_the_plan_chunks_a_long_prompt_then_bursts_then_ramps_and_has_grammars_only_with_a_tokenizer():
    limits = EngineLimits(token_budget=8192, max_num_seqs=256, max_model_len=131072, kv_capacity=800_000, block_size=16)
    waves = plan(limits, with_grammar=False)
    lone = [wave[0].prompt_len for wave in waves if len(wave) == 1]
    assert {1, 2, 3, 255, 256, 257} <= set(lone)  # one block; block tables 16 and 17 wide
    chunked = [n for n in lone if n > limits.token_budget]
    assert len(chunked) == 2 and chunked[0] == chunked[1]
    kinds = {r.sampling.structured is not None for wave in waves for r in wave}
    assert kinds == {False}
    assert any(r.sampling.structured is not None for wave in plan(limits, with_grammar=True) for r in wave)
    burst = waves[-2]
    assert {r.prompt_len for r in burst} == {limits.token_budget // 16}
    assert [r.arrival_step for r in burst] == [i // 16 for i in range(64)]  # 16 a step: a step's worth of tokens
    per_step = Counter(r.arrival_step for r in waves[-1])
    assert [per_step[step] for step in range(33)] == [1] * 32 + [3]  # one a step, then odd counts
    assert set(per_step.values()) == {1, 3, 5, 7}


def test_the_startup_breakdown_names_each_phase(tiny_config_dir):
    seconds = build(tiny_config_dir).info.startup.seconds
    assert list(seconds) == ["model_load", "kv_cache", "total"]  # no graphs and no warm-up on a CPU
    assert seconds["total"] >= seconds["model_load"] + seconds["kv_cache"] > 0
    clock = StartupClock.since_process_start()
    clock.lap("model_load")
    breakdown = clock.breakdown()
    assert list(breakdown.seconds) == ["import", "model_load", "total"]
    assert 0 < breakdown.seconds["import"] <= breakdown.seconds["total"]  # pytest has been running a while
    assert breakdown.describe().startswith(f"{breakdown.seconds['total']:.1f}s to serve (import ")


def test_the_startup_breakdown_is_a_gauge_by_phase(tiny_config_dir):
    registry = CollectorRegistry()
    startup = build(tiny_config_dir).info.startup
    RuntimeMetrics(registry, "tiny", "pool", "r1").record_startup(startup)
    labels = {"model_name": "tiny", "pool": "pool", "revision": "r1"}
    for phase, seconds in startup.seconds.items():
        assert registry.get_sample_value("shoal:startup_phase_seconds", {**labels, "phase": phase}) == seconds


def test_compile_cache_dir_points_triton_there(tiny_config_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)  # and put back as it was after the test
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config, _ = configs_from_args(parser.parse_args(["--compile-cache-dir", str(tmp_path / "triton")]))
    assert config.compile_cache_dir == str(tmp_path / "triton")
    build(tiny_config_dir, compile_cache_dir=config.compile_cache_dir)
    assert os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "triton") and (tmp_path / "triton").is_dir()
    triton = pytest.importorskip("triton")
    assert triton.knobs.cache.dir == str(tmp_path / "triton")


def test_warmup_flag_defaults_to_the_device_choice():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert [configs_from_args(parser.parse_args(argv))[0].warmup for argv in ([], ["--warmup"], ["--no-warmup"])] == [
        None,
        True,
        False,
    ]


@pytest.mark.integration
def test_the_warm_up_masks_a_grammar_where_the_model_has_a_tokenizer(smollm_dir):
    built = build_engine(
        EngineConfig(
            model=str(smollm_dir),
            kv_cache_memory=64 << 20,
            max_num_seqs=2,
            max_num_batched_tokens=TOKEN_BUDGET,
            max_model_len=512,
        )
    )
    engine, masked = built.engine, []
    launch = engine.runner.launch
    engine.runner.launch = lambda step: masked.append(step.token_bitmask is not None) or launch(step)
    warm_up(engine, engine.runner.sampler.generator, built.grammars)
    assert any(masked) and not engine.has_unfinished()


@pytest.mark.integration
def test_the_runtime_logs_and_exports_its_startup_phases(runtime_server):
    text = runtime_server.scrape()
    phases = {
        sample.labels["phase"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "shoal:startup_phase_seconds"
    }
    assert list(phases) == ["import", "model_load", "kv_cache", "total"]  # a CPU: no graphs, no warm-up
    assert phases["total"] >= phases["import"] + phases["model_load"] + phases["kv_cache"]
    assert "startup: " in runtime_server.logs() and "s to serve (import " in runtime_server.logs()
