"""Tensor parallelism on the CPU (gloo): the ranks together decode exactly what one process does.

Each rank is its own process (torch.multiprocessing), builds its slice of the model from the full
checkpoint, and runs greedy decoding over its own paged KV cache; rank 0's tokens and logits are
compared with the unsharded model's, decoded the same way in this process. The embedded SmolLM2
(9 heads, 3 KV heads) splits over 3 ranks; a tiny Llama with biases, untied embeddings and a
vocabulary that leaves padding on the last rank splits over 2.
"""

from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from transformers import AutoConfig

from shoal.runtime.model.arch_config import ModelArchConfig
from shoal.runtime.parallel.sharded_llama import shard_arch
from shoal.runtime.parallel.tensor_parallel import TensorParallel
from tests.runtime.parallel.paged_greedy import full_model, greedy_decode, run_rank, save_random_llama

MAX_NEW_TOKENS = 8
TEXTS = ["The capital of France is", "def fibonacci(n):\n    ", "Shoal runs fleets of language-model servers on"]


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory) -> Path:
    return save_random_llama(tmp_path_factory.mktemp("tiny-llama-weights"), num_hidden_layers=2)


@pytest.mark.integration
@pytest.mark.parametrize("model, world_size", [("smollm", 3), ("tiny", 2)], ids=["smollm2-tp3", "tiny-llama-tp2"])
def test_ranks_decode_the_same_greedy_tokens_as_one_process(
    model, world_size, smollm_dir, smollm_tokenizer, tiny_llama_dir, tmp_path
):
    if model == "smollm":
        model_dir, prompts = smollm_dir, [smollm_tokenizer.encode(text) for text in TEXTS]
    else:
        model_dir, prompts = tiny_llama_dir, [[(7 * i + 3 * n) % 255 for i in range(5 + 9 * n)] for n in range(3)]
    out = tmp_path / "rank0.pt"
    args = (world_size, tmp_path / "init", model_dir, prompts, MAX_NEW_TOKENS, out)
    mp.spawn(run_rank, args=args, nprocs=world_size, join=True)
    sharded = torch.load(out)

    expected = greedy_decode(full_model(model_dir), prompts, MAX_NEW_TOKENS)
    assert sharded["tokens"] == expected.tokens
    torch.testing.assert_close(sharded["logits"], expected.logits, atol=1e-4, rtol=0)


def test_a_world_size_that_does_not_split_the_heads_evenly_is_refused(smollm_dir):
    arch = ModelArchConfig.from_hf(AutoConfig.from_pretrained(str(smollm_dir)))  # 9 heads, 3 KV heads
    with pytest.raises(ValueError, match=r"size 2 must divide num_attention_heads \(9\); allowed sizes: \[1, 3\]"):
        shard_arch(arch, 2)
    assert shard_arch(arch, 3).num_key_value_heads == 1


def test_a_rank_outside_the_group_is_refused():
    with pytest.raises(ValueError, match="rank 2 is not in"):
        TensorParallel(rank=2, world_size=2)
