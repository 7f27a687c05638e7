"""Our RoPE frequencies and model-config parsing against transformers' own, for each scaling type."""

import pytest
import torch
from transformers import LlamaConfig, MistralConfig, Qwen2Config
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from shoal.runtime.layers.ops import TorchOps
from shoal.runtime.layers.rotary_embedding import RotaryEmbedding, rope_inv_freq
from shoal.runtime.model.arch_config import ModelArchConfig

ROPE_PARAMETERS = [
    {"rope_type": "default", "rope_theta": 10000.0},
    {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0},
    {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 1024,
        "rope_theta": 500000.0,
    },
    {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024, "rope_theta": 1000000.0},
]


@pytest.mark.parametrize("rope_parameters", ROPE_PARAMETERS, ids=lambda p: p["rope_type"])
def test_inverse_frequencies_and_attention_scale_match_transformers(rope_parameters):
    config = LlamaConfig(
        hidden_size=512, num_attention_heads=4, max_position_embeddings=4096, rope_parameters=dict(rope_parameters)
    )
    arch = ModelArchConfig.from_hf(config)
    ours, our_scale = rope_inv_freq(arch.rope, arch.head_dim)
    if rope_parameters["rope_type"] == "default":
        # transformers keeps the default inside the rotary module; the formula is base^(-2i/d).
        theirs = 1.0 / (10000.0 ** (torch.arange(0, 128, 2, dtype=torch.int64).float() / 128))
        their_scale = 1.0
    else:
        theirs, their_scale = ROPE_INIT_FUNCTIONS[rope_parameters["rope_type"]](config, torch.device("cpu"))
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)
    assert our_scale == pytest.approx(their_scale)


def test_rotation_preserves_norms_and_position_zero_is_identity():
    arch = ModelArchConfig.from_hf(LlamaConfig(hidden_size=64, num_attention_heads=4, max_position_embeddings=64))
    rotary = RotaryEmbedding(arch.rope, arch.head_dim, 64, TorchOps())
    q, k = torch.randn(3, 4, 16), torch.randn(3, 4, 16)
    rq, rk = rotary(torch.tensor([0, 5, 63]), q, k)
    torch.testing.assert_close(rq[0], q[0])
    torch.testing.assert_close(rq.norm(dim=-1), q.norm(dim=-1))


def test_config_parsing_knows_each_family():
    llama = ModelArchConfig.from_hf(LlamaConfig(hidden_size=64, num_attention_heads=8, num_key_value_heads=2))
    assert (llama.num_key_value_heads, llama.head_dim, llama.qkv_bias, llama.o_bias) == (2, 8, False, False)
    qwen = ModelArchConfig.from_hf(Qwen2Config(hidden_size=64, num_attention_heads=4, num_key_value_heads=2))
    assert (qwen.qkv_bias, qwen.o_bias, qwen.sliding_window) == (True, False, None)
    mistral = ModelArchConfig.from_hf(
        MistralConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, sliding_window=4096)
    )
    assert mistral.sliding_window == 4096


def test_unsupported_architectures_are_refused_by_name():
    from transformers import GPT2Config

    with pytest.raises(ValueError, match="gpt2"):
        ModelArchConfig.from_hf(GPT2Config())
