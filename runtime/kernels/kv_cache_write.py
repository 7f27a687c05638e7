"""Triton: write each new token's K and V into its cache slot (vLLM's reshape_and_cache), one launch
for both. A slot of -1 (a padded row of a CUDA-graph batch) is skipped."""

import torch
import triton
import triton.language as tl


@triton.jit
def _write_kv_kernel(
    key_ptr,
    value_ptr,
    cache_ptr,
    slots_ptr,
    value_cache_offset,
    key_stride,
    value_stride,
    ROW: tl.constexpr,  # kv_heads * head_dim
    ROW_PAD: tl.constexpr,
):
    token = tl.program_id(0)
    slot = tl.load(slots_ptr + token)
    if slot < 0:
        return
    offsets = tl.arange(0, ROW_PAD)
    mask = offsets < ROW
    key = tl.load(key_ptr + token * key_stride + offsets, mask=mask)
    value = tl.load(value_ptr + token * value_stride + offsets, mask=mask)
    tl.store(cache_ptr + slot * ROW + offsets, key, mask=mask)
    tl.store(cache_ptr + value_cache_offset + slot * ROW + offsets, value, mask=mask)


def write_kv(kv_cache: torch.Tensor, key: torch.Tensor, value: torch.Tensor, slots: torch.Tensor) -> None:
    """kv_cache: [2, num_blocks, block_size, kv_heads, head_dim]; key/value: [tokens, kv_heads, head_dim]
    (rows may be strided views of the fused qkv output, but each row must be contiguous)."""
    num_tokens, kv_heads, head_dim = key.shape
    if num_tokens == 0:
        return
    row = kv_heads * head_dim
    assert key.stride()[1:] == value.stride()[1:] == (head_dim, 1), "each token's heads must be contiguous"
    _write_kv_kernel[(num_tokens,)](
        key,
        value,
        kv_cache,
        slots,
        kv_cache.stride(0),
        key.stride(0),
        value.stride(0),
        ROW=row,
        ROW_PAD=triton.next_power_of_2(row),
    )
