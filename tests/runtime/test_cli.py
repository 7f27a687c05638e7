"""`shoal runtime` flags: parsing, typed configs, and clear errors instead of tracebacks."""

import argparse
import subprocess
import sys

import pytest
import torch

from shoal.runtime.cli import add_arguments, configs_from_args, parse_size
from shoal.runtime.config import CPU_MAX_NUM_BATCHED_TOKENS, GPU_MAX_NUM_BATCHED_TOKENS, EngineConfig, ServerConfig
from shoal.runtime.rank_build import resolve_token_budget


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1000", 1000),
        ("4GiB", 4 << 30),
        ("512MiB", 512 << 20),
        ("2G", 2 * 10**9),
        ("1.5KiB", 1536),
        ("64 mib", 64 << 20),
    ],
)
def test_sizes_parse_in_decimal_and_binary_units(text, size):
    assert parse_size(text) == size


def test_bad_size_is_an_argument_error():
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size("lots")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_flags_become_typed_configs():
    engine, server = configs_from_args(
        parse("--max-num-seqs", "8", "--kv-cache-memory", "1GiB", "--no-enable-prefix-caching", "--port", "6000")
    )
    assert (engine.max_num_seqs, engine.kv_cache_memory, engine.enable_prefix_caching) == (8, 1 << 30, False)
    assert server.port == 6000


def test_no_flags_give_the_config_dataclasses_own_defaults(monkeypatch):
    monkeypatch.delenv("SHOAL_POOL", raising=False)
    monkeypatch.delenv("SHOAL_REVISION", raising=False)
    assert configs_from_args(parse()) == (EngineConfig(), ServerConfig())


def test_pool_and_revision_default_from_the_environment(monkeypatch):
    monkeypatch.setenv("SHOAL_POOL", "chat")
    monkeypatch.setenv("SHOAL_REVISION", "v2")
    _, server = configs_from_args(parse())
    assert (server.pool, server.revision) == ("chat", "v2")


def test_out_of_range_values_are_refused_by_field():
    with pytest.raises(ValueError, match="max_num_seqs must be >= 1"):
        configs_from_args(parse("--max-num-seqs", "0"))
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        configs_from_args(parse("--gpu-memory-utilization", "1.5"))


def test_missing_model_exits_with_a_message_not_a_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "shoal",
            "runtime",
            "--model",
            str(tmp_path / "nope"),
            "--port",
            "0",
            "--metrics-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "shoal runtime: --model" in result.stderr
    assert "Traceback" not in result.stderr


def test_token_budget_is_chosen_by_device_unless_given():
    assert configs_from_args(parse())[0].max_num_batched_tokens is None
    assert resolve_token_budget(None, torch.device("cuda")) == GPU_MAX_NUM_BATCHED_TOKENS
    assert resolve_token_budget(None, torch.device("cpu")) == CPU_MAX_NUM_BATCHED_TOKENS
    assert resolve_token_budget(4096, torch.device("cpu")) == 4096
    with pytest.raises(ValueError, match="max_num_batched_tokens must be >= 1"):
        configs_from_args(parse("--max-num-batched-tokens", "0"))
