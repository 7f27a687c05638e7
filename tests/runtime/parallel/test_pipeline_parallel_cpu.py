"""Pipeline parallelism on the CPU (gloo): the stages together decode exactly what one process does.

Each stage is its own process (torch.multiprocessing), builds its model from its share of the full
checkpoint, and runs its layers over its own paged KV cache, handing the hidden state and residual
to the next stage; the last stage's tokens and logits are compared with the whole model's, decoded
the same way in this process. The embedded SmolLM2 (30 layers, tied LM head) splits into 2 stages,
a tiny Llama (5 layers, biases, untied LM head) into 3.
"""

from itertools import pairwise
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from shoal.runtime.model.arch_config import ModelArchConfig
from shoal.runtime.model.llama import LlamaForCausalLM
from shoal.runtime.model.loader import ModelSource, load_hf_config
from shoal.runtime.parallel.pipeline_stage import (
    IntermediateTensors,
    StageLayout,
    forward_stage,
    split_layers,
    stage_tensor_name,
)
from shoal.runtime.parallel.sharded_llama import ModelShare, build_sharded_model
from shoal.runtime.parallel.tensor_parallel import TensorParallel
from tests.runtime.parallel.paged_greedy import (
    KERNELS,
    PLACEMENT,
    full_model,
    greedy_decode,
    run_stage,
    save_random_llama,
)

MAX_NEW_TOKENS = 8
TEXTS = ["The capital of France is", "def fibonacci(n):\n    ", "Shoal runs fleets of language-model servers on"]
TINY_PROMPTS = [[(7 * i + 3 * n) % 255 for i in range(5 + 9 * n)] for n in range(3)]


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory) -> Path:
    return save_random_llama(tmp_path_factory.mktemp("tiny-llama-5-layers"), num_hidden_layers=5)


def _layer_ranges(layouts: list[StageLayout]) -> list[tuple[int, int]]:
    return [(layout.first_layer, layout.end_layer) for layout in layouts]


def test_layers_split_evenly_when_they_can():
    layouts = split_layers(30, 2)
    assert _layer_ranges(layouts) == [(0, 15), (15, 30)]
    assert [(layout.stage, layout.num_stages) for layout in layouts] == [(0, 2), (1, 2)]
    assert layouts[0].is_first and not layouts[0].is_last and layouts[1].is_last


@pytest.mark.parametrize(
    "num_layers, num_stages, counts",
    [(30, 4, [7, 8, 8, 7]), (5, 3, [2, 2, 1]), (7, 4, [2, 2, 2, 1]), (4, 4, [1, 1, 1, 1]), (30, 1, [30])],
)
def test_extra_layers_go_to_the_stages_before_the_last_from_the_last_backwards(num_layers, num_stages, counts):
    """vLLM's convention: the last stage, which runs the LM head, never takes an extra layer."""
    layouts = split_layers(num_layers, num_stages)
    assert [layout.num_layers for layout in layouts] == counts
    ranges = _layer_ranges(layouts)
    assert ranges[0][0] == 0 and ranges[-1][1] == num_layers
    assert all(end == next_first for (_, end), (next_first, _) in pairwise(ranges))


def test_more_stages_than_layers_are_refused():
    with pytest.raises(ValueError, match=r"pipeline parallel size 31 exceeds the model's 30 layers"):
        split_layers(30, 31)


@pytest.mark.parametrize(
    "name, stage, tied, expected",
    [
        ("model.layers.3.mlp.down_proj.weight", 1, False, "model.layers.1.mlp.down_proj.weight"),
        ("model.layers.1.mlp.down_proj.weight", 1, False, None),
        ("model.embed_tokens.weight", 0, True, "model.embed_tokens.weight"),
        ("model.embed_tokens.weight", 1, False, None),
        ("model.embed_tokens.weight", 2, True, "lm_head.weight"),
        ("lm_head.weight", 2, True, None),
        ("lm_head.weight", 2, False, "lm_head.weight"),
        ("model.norm.weight", 0, False, None),
        ("model.norm.weight", 2, False, "model.norm.weight"),
    ],
)
def test_checkpoint_names_map_to_the_stage_that_holds_them(name, stage, tied, expected):
    layout = split_layers(5, 3)[stage]  # layers [0, 2), [2, 4), [4, 5)
    assert stage_tensor_name(name, layout, tied) == expected


class ChainedStages:
    """All stages in this process, as greedy_decode drives a model: each hands its output to the next."""

    def __init__(self, stages: list[tuple[LlamaForCausalLM, StageLayout]]):
        self.stages = stages

    def __call__(self, input_ids, positions, meta) -> torch.Tensor:
        out = None
        for model, layout in self.stages:
            out = forward_stage(model, layout, input_ids, positions, meta, out)
            assert isinstance(out, torch.Tensor if layout.is_last else IntermediateTensors)
        return out

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.stages[-1][0].compute_logits(hidden)

    def allocate_kv_caches(self, *args) -> list[torch.Tensor]:
        return [cache for model, _ in self.stages for cache in model.allocate_kv_caches(*args)]

    def release_kv_caches(self) -> None:
        for model, _ in self.stages:
            model.release_kv_caches()


def test_each_stage_holds_only_its_layers_and_ends_and_together_they_are_the_model(tiny_llama_dir):
    source = ModelSource("safetensors", tiny_llama_dir)
    arch = ModelArchConfig.from_hf(load_hf_config(source))
    layouts = split_layers(arch.num_hidden_layers, 3)
    one_rank = TensorParallel(0, 1)
    stages = [
        (build_sharded_model(arch, source, KERNELS, PLACEMENT, 256, ModelShare(one_rank, layout)), layout)
        for layout in layouts
    ]

    for model, layout in stages:
        assert len(model.model.layers) == model.arch.num_hidden_layers == layout.num_layers
        assert (model.model.embed_tokens is not None) == layout.is_first
        assert (model.lm_head is not None) == (model.model.norm is not None) == layout.is_last
    whole = full_model(tiny_llama_dir)
    assert sum(p.numel() for model, _ in stages for p in model.parameters()) == sum(
        p.numel() for p in whole.parameters()
    )
    torch.testing.assert_close(
        stages[2][0].model.layers[0].mlp.down_proj.weight, whole.model.layers[4].mlp.down_proj.weight
    )

    chained = greedy_decode(ChainedStages(stages), TINY_PROMPTS, MAX_NEW_TOKENS)
    expected = greedy_decode(whole, TINY_PROMPTS, MAX_NEW_TOKENS)
    assert chained.tokens == expected.tokens
    torch.testing.assert_close(chained.logits, expected.logits, atol=1e-5, rtol=0)


@pytest.mark.integration
@pytest.mark.parametrize("model, num_stages", [("smollm", 2), ("tiny", 3)], ids=["smollm2-pp2", "tiny-llama-pp3"])
def test_stages_decode_the_same_greedy_tokens_as_one_process(
    model, num_stages, smollm_dir, smollm_tokenizer, tiny_llama_dir, tmp_path
):
    if model == "smollm":
        model_dir, prompts = smollm_dir, [smollm_tokenizer.encode(text) for text in TEXTS]
    else:
        model_dir, prompts = tiny_llama_dir, TINY_PROMPTS
    out = tmp_path / "last-stage.pt"
    args = (num_stages, tmp_path / "init", model_dir, prompts, MAX_NEW_TOKENS, out)
    mp.spawn(run_stage, args=args, nprocs=num_stages, join=True)
    pipelined = torch.load(out)

    expected = greedy_decode(full_model(model_dir), prompts, MAX_NEW_TOKENS)
    assert pipelined["tokens"] == expected.tokens
    torch.testing.assert_close(pipelined["logits"], expected.logits, atol=1e-4, rtol=0)
