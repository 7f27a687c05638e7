"""How many KV blocks the pool gets: a byte budget divided by the bytes one block takes.

On a GPU the budget is what remains of `gpu_memory_utilization` of its memory after the weights
and the peak activations of the largest step, found by running that step once (vLLM's profile
run): a prefill of the whole token budget plus sampling for every sequence slot.
"""

from dataclasses import dataclass

import numpy as np
import torch

from shoal.runtime.model.arch_config import ModelArchConfig
from shoal.runtime.model.llama import LlamaForCausalLM
from shoal.runtime.model.placement import Placement
from shoal.runtime.sampling.sampler import apply_min_p, apply_top_k_top_p
from shoal.runtime.worker.batch_inputs import BatchInputs

CPU_DEFAULT_KV_CACHE_BYTES = 1 << 30
# Room left for CUDA graphs' own memory pool and allocator slack.
GPU_RESERVE_BYTES = 256 << 20


@dataclass(frozen=True)
class KVCacheShape:
    """The pool the worker allocates: how many blocks of how many tokens, where, in what type."""

    num_blocks: int
    block_size: int
    placement: Placement


@dataclass(frozen=True)
class StepBounds:
    """The largest step the scheduler may build: the one the profile run measures."""

    max_num_batched_tokens: int
    max_num_seqs: int
    max_model_len: int


def kv_block_bytes(arch: ModelArchConfig, dtype: torch.dtype, block_size: int) -> int:
    return arch.kv_bytes_per_token(dtype.itemsize) * block_size


def num_kv_blocks(archs: list[ModelArchConfig], dtype: torch.dtype, block_size: int, budget_bytes: int) -> int:
    """Blocks of every model whose cache the block table addresses: the target's, and a draft model's."""
    block_bytes = sum(kv_block_bytes(arch, dtype, block_size) for arch in archs)
    blocks = budget_bytes // block_bytes
    if blocks < 1:
        raise ValueError(
            f"the KV cache budget of {budget_bytes} bytes holds no block of {block_size} tokens "
            f"({block_bytes} bytes); raise --kv-cache-memory or --gpu-memory-utilization"
        )
    return blocks


def gpu_kv_budget(device: torch.device, gpu_memory_utilization: float, activation_bytes: int) -> tuple[int, int]:
    """(budget for the pool, memory free right now), both in bytes."""
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info(device)
    budget = int(total * gpu_memory_utilization) - (total - free) - activation_bytes - GPU_RESERVE_BYTES
    return max(budget, 0), free


@torch.inference_mode()
def profile_activation_bytes(model: LlamaForCausalLM, bounds: StepBounds, block_size: int, placement: Placement) -> int:
    """Peak memory of one step at the token budget, over what was allocated before it."""
    num_tokens, num_seqs, max_model_len = bounds.max_num_batched_tokens, bounds.max_num_seqs, bounds.max_model_len
    device = placement.device
    lengths = [max_model_len] * (num_tokens // max_model_len) + (
        [num_tokens % max_model_len] if num_tokens % max_model_len else []
    )
    batch = _contiguous_batch(lengths, block_size)
    model.allocate_kv_caches(sum(-(-n // block_size) for n in lengths), block_size, placement.dtype, device)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    input_ids, positions, meta = batch.to_device(device)
    hidden = model(input_ids, positions, meta)
    rows = torch.arange(num_seqs, device=device) % hidden.shape[0]
    logits = model.compute_logits(hidden[rows])
    vocab = logits.shape[-1]
    filtered = apply_top_k_top_p(
        logits, torch.full((num_seqs,), vocab, device=device), torch.full((num_seqs,), 0.9, device=device)
    )
    apply_min_p(filtered, torch.full((num_seqs,), 0.1, device=device)).softmax(-1)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    model.release_kv_caches()
    return peak


def _contiguous_batch(lengths: list[int], block_size: int) -> BatchInputs:
    """Prefill sequences of the given lengths laid out in consecutive blocks."""
    batch = BatchInputs()
    first_block = 0
    for n in lengths:
        blocks = list(range(first_block, first_block + -(-n // block_size)))
        batch.input_ids.extend([0] * n)
        batch.positions.extend(range(n))
        batch.slot_mapping.extend(np.arange(n) + first_block * block_size)
        batch.query_start_loc.append(batch.query_start_loc[-1] + n)
        batch.seq_lens.append(n)
        batch.block_tables.append(blocks)
        first_block += len(blocks)
    return batch
