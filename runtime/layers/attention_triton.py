"""GPU attention backend: Triton kernels for the KV write and for paged attention."""

import torch

from shoal.runtime.kernels.kv_cache_write import write_kv
from shoal.runtime.kernels.paged_attention import PagedAttentionKernels, PagedBatch, decode_splits
from shoal.runtime.layers.attention import AttentionMetadata


class TritonAttentionBackend:
    def __init__(
        self,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        block_size: int,
        dtype: torch.dtype,
        device: torch.device,
    ):
        self.kernels = PagedAttentionKernels(num_heads, num_kv_heads, head_dim, block_size, dtype, device)

    def write_kv(self, kv_cache: torch.Tensor, key: torch.Tensor, value: torch.Tensor, slots: torch.Tensor) -> None:
        write_kv(kv_cache, key, value, slots)

    def attend(
        self, query: torch.Tensor, kv_cache: torch.Tensor, meta: AttentionMetadata, scale: float
    ) -> torch.Tensor:
        k = self.kernels
        splits = (
            decode_splits(meta.num_decodes, k.num_kv_heads, meta.max_decode_seq_len, k.num_sms, k.TILE_N)
            if meta.num_decodes
            else 1
        )
        prefill_tokens = meta.query_start_loc_host[-1] - meta.query_start_loc_host[meta.num_decodes]
        batch = PagedBatch(
            meta.block_tables,
            meta.seq_lens,
            meta.query_start_loc,
            meta.num_decodes,
            meta.num_seqs,
            prefill_tokens,
            splits,
        )
        return k.forward(query, kv_cache, batch, scale)
