"""Model sources: the embedded default, GGUF files, HF directories, random weights, and their errors."""

import pytest
import torch

from shoal.runtime.build import build_engine
from shoal.runtime.config import EngineConfig
from shoal.runtime.model.loader import materialize, resolve_model_source
from shoal.runtime.sampling.params import SamplingParams


def test_default_is_the_embedded_gguf_converted_to_an_hf_directory():
    source = resolve_model_source("default")
    assert source.kind == "gguf" and source.gguf_file.endswith(".gguf")
    converted = materialize(source)
    assert converted.kind == "safetensors"
    assert (converted.directory / "model.safetensors").is_file()
    assert (converted.directory / "tokenizer.json").is_file()
    assert converted.describe() == source.describe()


def test_a_gguf_file_path_is_accepted(tmp_path):
    gguf = resolve_model_source("default")
    path = gguf.directory / gguf.gguf_file
    assert resolve_model_source(str(path)).kind == "gguf"


def test_unusable_model_paths_get_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not 'default', a .gguf file"):
        resolve_model_source(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no config.json"):
        resolve_model_source(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="no \\*.safetensors"):
        resolve_model_source(str(tmp_path))
    assert resolve_model_source(str(tmp_path), "dummy").kind == "dummy"


def test_dummy_weights_build_a_working_engine_without_a_tokenizer(tiny_config_dir):
    built = build_engine(EngineConfig(model=str(tiny_config_dir), load_format="dummy", kv_cache_memory=1 << 20))
    assert built.tokenizer is None and not built.info.has_tokenizer
    weights = built.engine.runner.model.model.layers[0].mlp.down_proj.weight
    assert 0.01 < weights.std().item() < 0.03  # initialised, not left empty
    assert built.info.kv_cache_tokens == built.engine.stats().kv_blocks_total * 16


def test_checkpoint_missing_a_tensor_is_refused(tmp_path):
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    state = LlamaForCausalLM(config).state_dict()
    del state["model.layers.0.self_attn.k_proj.weight"]
    config.save_pretrained(tmp_path)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="lacks 1 tensors.*'model.layers.0.self_attn.k_proj.weight'"):
        build_engine(EngineConfig(model=str(tmp_path), kv_cache_memory=1 << 20))


def test_max_model_len_beyond_the_kv_pool_is_refused(tiny_config_dir):
    with pytest.raises(ValueError, match="does not fit in the KV cache"):
        build_engine(
            EngineConfig(model=str(tiny_config_dir), load_format="dummy", kv_cache_memory=4096, max_model_len=500)
        )


def test_bf16_engine_runs_on_cpu(tiny_config_dir):
    built = build_engine(
        EngineConfig(model=str(tiny_config_dir), load_format="dummy", dtype="bfloat16", kv_cache_memory=1 << 20)
    )
    assert built.engine.runner.kv_caches[0].dtype == torch.bfloat16
    built.engine.add_request("a", [1, 2, 3], SamplingParams(max_tokens=3, ignore_eos=True))
    steps = 0
    while built.engine.has_unfinished():
        built.engine.step()
        steps += 1
    assert steps == 3
