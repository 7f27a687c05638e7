"""How many KV blocks the pool gets: a byte budget divided by the bytes one block takes."""

import torch

from shoal.runtime.model.arch_config import ModelArchConfig

CPU_DEFAULT_KV_CACHE_BYTES = 1 << 30


def kv_block_bytes(arch: ModelArchConfig, dtype: torch.dtype, block_size: int) -> int:
    return arch.kv_bytes_per_token(dtype.itemsize) * block_size


def kv_cache_budget(device: torch.device, kv_cache_memory: int | None, gpu_memory_utilization: float) -> int:
    """Bytes for the pool: the explicit budget if given; on a GPU, what is left of
    `gpu_memory_utilization` of its memory once the weights are in; on CPU, 1 GiB."""
    if kv_cache_memory is not None:
        return kv_cache_memory
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return max(int(total * gpu_memory_utilization) - (total - free), 0)
    return CPU_DEFAULT_KV_CACHE_BYTES


def num_kv_blocks(arch: ModelArchConfig, dtype: torch.dtype, block_size: int, budget_bytes: int) -> int:
    blocks = budget_bytes // kv_block_bytes(arch, dtype, block_size)
    if blocks < 1:
        raise ValueError(
            f"the KV cache budget of {budget_bytes} bytes holds no block of {block_size} tokens "
            f"({kv_block_bytes(arch, dtype, block_size)} bytes); raise --kv-cache-memory"
        )
    return blocks
