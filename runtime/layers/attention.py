"""Attention over the paged KV cache, for a flat batch of tokens from many sequences.

The batch is ragged: sequence i owns query tokens [query_start_loc[i], query_start_loc[i+1]) and
attends to the first seq_lens[i] tokens of its context, which live in the blocks its block table
names. Single-token (decode) sequences come first. Each layer writes its new K/V into the cache
before attending, so a sequence that reads a block written in the same step sees it.

The backend does the work; `TorchAttentionBackend` is the reference that runs anywhere.
"""

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor  # [num_tokens] int64: cache slot (block * block_size + offset) per token
    query_start_loc: torch.Tensor  # [num_seqs + 1] int32
    seq_lens: torch.Tensor  # [num_seqs] int32: context length after this step
    block_tables: torch.Tensor  # [num_seqs, max_blocks] int32, padded with 0
    num_decodes: int  # the first num_decodes sequences have exactly one query token
    # Host copies, so that backends need no device-to-host sync to plan their work.
    query_start_loc_host: list[int]
    seq_lens_host: list[int]
    max_decode_seq_len: int = 0

    @property
    def num_seqs(self) -> int:
        return len(self.seq_lens_host)


class AttentionBackend(Protocol):
    def write_kv(self, kv_cache: torch.Tensor, key: torch.Tensor, value: torch.Tensor, slots: torch.Tensor) -> None: ...

    def attend(
        self, query: torch.Tensor, kv_cache: torch.Tensor, meta: AttentionMetadata, scale: float
    ) -> torch.Tensor: ...


class PagedAttention(nn.Module):
    """One layer's attention; `kv_cache` ([2, num_blocks, block_size, kv_heads, head_dim]) is bound
    by the model runner once the pool is sized."""

    def __init__(self, num_heads: int, num_kv_heads: int, head_dim: int, backend: AttentionBackend):
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        self.backend = backend
        self.kv_cache = torch.empty(0)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        """q: [tokens, heads, head_dim]; k, v: [tokens, kv_heads, head_dim] -> [tokens, heads, head_dim]."""
        self.backend.write_kv(self.kv_cache, k, v, meta.slot_mapping)
        return self.backend.attend(q, self.kv_cache, meta, self.scale)
