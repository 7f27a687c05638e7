"""One rank's part of a LlamaForCausalLM under tensor parallelism (inside a pipeline stage, or of the
whole model), and its weights.

The rank's model is the ordinary LlamaForCausalLM built from a per-rank shape (its heads, KV heads,
MLP columns and vocabulary slice), so attention, rotary and the paged KV cache run unchanged on
the rank's heads. Then the layers whose outputs cross ranks are swapped for tensor_parallel.py's:
o_proj and down_proj become row-parallel, the embedding vocab-parallel, the LM head gathered.
"""

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from shoal.runtime.layers.ops import Kernels
from shoal.runtime.model.arch_config import ModelArchConfig
from shoal.runtime.model.llama import LlamaForCausalLM
from shoal.runtime.model.loader import ModelSource, SkipDefaultInit, checkpoint_tensors, default_dtype, init_random
from shoal.runtime.model.placement import Placement
from shoal.runtime.parallel.pipeline_stage import StageLayout, stage_arch, stage_checkpoint_tensors
from shoal.runtime.parallel.tensor_parallel import (
    ParallelLMHead,
    RowParallelLinear,
    TensorParallel,
    VocabParallelEmbedding,
    vocab_per_rank,
)

# Checkpoint name fragments of weights split along their output (dim 0) or input (dim 1); every other
# tensor (norms, row-parallel biases) is replicated on each rank.
_OUTPUT_SPLIT = (".q_proj.", ".k_proj.", ".v_proj.", ".gate_proj.", ".up_proj.", "embed_tokens.", "lm_head.")
_INPUT_SPLIT = (".o_proj.weight", ".down_proj.weight")


def shard_arch(arch: ModelArchConfig, world_size: int) -> ModelArchConfig:
    """The shape of one rank's model. Heads are split evenly, and KV heads with them, so that each
    rank's query heads share only its own KV heads (no KV head is replicated)."""
    for field in ("num_attention_heads", "num_key_value_heads", "intermediate_size"):
        if getattr(arch, field) % world_size:
            raise ValueError(
                f"tensor parallel size {world_size} must divide {field} ({getattr(arch, field)}); "
                f"allowed sizes: {_divisors_of_all(arch)}"
            )
    return dataclasses.replace(
        arch,
        num_attention_heads=arch.num_attention_heads // world_size,
        num_key_value_heads=arch.num_key_value_heads // world_size,
        intermediate_size=arch.intermediate_size // world_size,
        vocab_size=vocab_per_rank(arch.vocab_size, world_size),
    )


def _divisors_of_all(arch: ModelArchConfig) -> list[int]:
    sizes = (arch.num_attention_heads, arch.num_key_value_heads, arch.intermediate_size)
    return [n for n in range(1, arch.num_key_value_heads + 1) if all(size % n == 0 for size in sizes)]


@dataclass(frozen=True)
class ModelShare:
    """The part of a model one rank holds: its tensor-parallel slice of its pipeline stage's layers."""

    tp: TensorParallel
    layout: StageLayout | None = None  # None: every layer (no pipeline)


def build_sharded_model(
    arch: ModelArchConfig,
    source: ModelSource,
    kernels: Kernels,
    placement: Placement,
    max_position: int,
    share: ModelShare,
) -> LlamaForCausalLM:
    """This rank's model (the full `arch`), with its share of the checkpoint's weights; random ones
    for a dummy source, seeded by the rank (they stand for no whole model, which throughput ignores)."""
    tp, layout = share.tp, share.layout
    whole = stage_arch(arch, layout) if layout is not None else arch
    with default_dtype(placement.dtype), torch.device(placement.device), SkipDefaultInit():
        model = LlamaForCausalLM(
            shard_arch(whole, tp.world_size),
            kernels.attention,
            kernels.ops,
            max_position,
            with_embedding=layout is None or layout.is_first,
            with_head=layout is None or layout.is_last,
        )
        if tp.world_size > 1:
            _swap_parallel_layers(model, whole, tp)
    if source.kind == "dummy":
        init_random(model, (layout.stage if layout is not None else 0) * tp.world_size + tp.rank)
        return model.eval()
    if layout is None:
        tensors = checkpoint_tensors(source, placement.device)
    else:
        tensors = stage_checkpoint_tensors(source, placement.device, layout, arch.tie_word_embeddings)
    if tp.world_size > 1:
        load_sharded_weights(model, whole, tensors, tp)
    else:
        model.load_weights(tensors)
    return model.eval()


def _swap_parallel_layers(model: LlamaForCausalLM, arch: ModelArchConfig, tp: TensorParallel) -> None:
    rank_arch = model.arch
    for layer in model.model.layers:
        layer.self_attn.o_proj = RowParallelLinear(rank_arch.q_size, arch.hidden_size, arch.o_bias, tp)
        layer.mlp.down_proj = RowParallelLinear(rank_arch.intermediate_size, arch.hidden_size, arch.mlp_bias, tp)
    if model.model.embed_tokens is not None:  # a pipeline's first stage, or no pipeline
        model.model.embed_tokens = VocabParallelEmbedding(arch.vocab_size, arch.hidden_size, tp)
    if model.lm_head is not None:  # its last stage
        model.lm_head = ParallelLMHead(arch.hidden_size, arch.vocab_size, tp)
    if arch.tie_word_embeddings:  # both hold the same vocabulary slice
        model.lm_head.weight = model.model.embed_tokens.weight


@torch.no_grad()
def load_sharded_weights(
    model: LlamaForCausalLM, arch: ModelArchConfig, weights: Iterable[tuple[str, torch.Tensor]], tp: TensorParallel
) -> None:
    """Copy this rank's slice of each full checkpoint tensor (HF names) into the rank's model; the
    checks of LlamaForCausalLM.load_weights, against the full shapes."""
    targets = model.checkpoint_targets()
    missing = set(targets)
    for name, tensor in weights:
        if "rotary_emb.inv_freq" in name or (name == "lm_head.weight" and arch.tie_word_embeddings):
            continue
        if name not in targets:
            raise ValueError(f"checkpoint tensor {name!r} has no place in the model")
        target, dim = targets[name], _split_dim(name)
        expected = list(target.shape)
        if dim is not None:
            is_vocab = name.startswith(("model.embed_tokens.", "lm_head."))
            expected[dim] = arch.vocab_size if is_vocab else target.shape[dim] * tp.world_size
        if list(tensor.shape) != expected:
            raise ValueError(f"{name}: expected shape {tuple(expected)}, got {tuple(tensor.shape)}")
        if dim is None:
            target.copy_(tensor)
        else:
            _copy_rank_slice(target, tensor, dim, tp.rank)
        missing.discard(name)
    if missing:
        raise ValueError(f"the checkpoint lacks {len(missing)} tensors, e.g. {sorted(missing)[:3]}")


def _split_dim(name: str) -> int | None:
    if any(fragment in name for fragment in _OUTPUT_SPLIT):
        return 0
    if name.endswith(_INPUT_SPLIT):
        return 1
    return None


def _copy_rank_slice(target: torch.Tensor, full: torch.Tensor, dim: int, rank: int) -> None:
    """Rank r's slice [r * n, (r + 1) * n) of `full` along dim; rows past the end (the vocabulary's
    padding on the last rank) are zeroed."""
    size = target.shape[dim]
    start = rank * size
    length = max(0, min(size, full.shape[dim] - start))
    target.narrow(dim, 0, length).copy_(full.narrow(dim, start, length))
    target.narrow(dim, length, size - length).zero_()
