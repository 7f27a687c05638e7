"""Fixtures for the runtime tests: the embedded model (converted once), its tokenizer, HF's own model."""

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def smollm_dir() -> Path:
    from shoal.runtime.model.loader import materialize, resolve_model_source

    return materialize(resolve_model_source("default")).directory


@pytest.fixture(scope="session")
def smollm_tokenizer(smollm_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm_dir))


@pytest.fixture(scope="session")
def smollm_hf(smollm_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(smollm_dir), dtype=torch.float32).eval()


SERVER_KV_BLOCKS = 256
SERVER_POOL = "test-pool"
SERVER_REVISION = "r1"


@pytest.fixture(scope="session")
def runtime_server(smollm_dir):
    """One real runtime process serving the embedded model, shared by the end-to-end tests; each test
    leaves it idle."""
    from transformers import AutoConfig

    from shoal.runtime.model.arch_config import ModelArchConfig
    from shoal.runtime.worker.kv_cache_sizing import kv_block_bytes
    from tests.runtime.server_process import RuntimeProcess

    arch = ModelArchConfig.from_hf(AutoConfig.from_pretrained(str(smollm_dir)))
    pool_bytes = SERVER_KV_BLOCKS * kv_block_bytes(arch, torch.float32, 16)
    server = RuntimeProcess(
        "--kv-cache-memory",
        str(pool_bytes),
        "--max-model-len",
        str(SERVER_KV_BLOCKS * 16),
        "--max-num-batched-tokens",
        "512",
        "--pool",
        SERVER_POOL,
        "--revision",
        SERVER_REVISION,
    )
    yield server.wait_ready()
    server.stop()


@pytest.fixture(scope="session")
def tiny_config_dir(tmp_path_factory):
    """A Llama config with no weights and no tokenizer: served with --load-format dummy."""
    from tests.support.tiny_llama import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
