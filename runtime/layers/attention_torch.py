"""Reference attention backend in plain torch: runs on CPU (and anywhere), used as the oracle for
the GPU kernels. Decodes are batched into one call; prefill chunks run one sequence at a time."""

import torch
import torch.nn.functional as F

from shoal.runtime.layers.attention import AttentionMetadata


class TorchAttentionBackend:
    def write_kv(self, kv_cache: torch.Tensor, key: torch.Tensor, value: torch.Tensor, slots: torch.Tensor) -> None:
        _, num_blocks, block_size, num_kv_heads, head_dim = kv_cache.shape
        flat = kv_cache.view(2, num_blocks * block_size, num_kv_heads, head_dim)
        flat[0].index_copy_(0, slots, key)
        flat[1].index_copy_(0, slots, value)

    def attend(
        self, query: torch.Tensor, kv_cache: torch.Tensor, meta: AttentionMetadata, scale: float
    ) -> torch.Tensor:
        out = torch.empty_like(query)
        if meta.num_decodes:
            out[: meta.num_decodes] = self._decode(query[: meta.num_decodes], kv_cache, meta, scale)
        for i in range(meta.num_decodes, meta.num_seqs):
            start, end = meta.query_start_loc_host[i], meta.query_start_loc_host[i + 1]
            out[start:end] = self._prefill(query[start:end], kv_cache, meta, i, scale)
        return out

    def _decode(
        self, query: torch.Tensor, kv_cache: torch.Tensor, meta: AttentionMetadata, scale: float
    ) -> torch.Tensor:
        n = meta.num_decodes
        block_size = kv_cache.shape[2]
        max_len = max(meta.seq_lens_host[:n])
        tables = meta.block_tables[:n, : -(-max_len // block_size)]
        keys = kv_cache[0][tables].flatten(1, 2)[:, :max_len].transpose(1, 2)  # [n, kv_heads, L, D]
        values = kv_cache[1][tables].flatten(1, 2)[:, :max_len].transpose(1, 2)
        positions = torch.arange(max_len, device=query.device)
        mask = (positions[None, :] < meta.seq_lens[:n, None])[:, None, None, :]
        out = F.scaled_dot_product_attention(
            query.unsqueeze(2), keys, values, attn_mask=mask, scale=scale, enable_gqa=True
        )
        return out.squeeze(2)

    def _prefill(
        self, query: torch.Tensor, kv_cache: torch.Tensor, meta: AttentionMetadata, i: int, scale: float
    ) -> torch.Tensor:
        num_queries, context = query.shape[0], meta.seq_lens_host[i]
        block_size = kv_cache.shape[2]
        blocks = meta.block_tables[i, : -(-context // block_size)]
        keys = kv_cache[0][blocks].flatten(0, 1)[:context].transpose(0, 1).unsqueeze(0)
        values = kv_cache[1][blocks].flatten(0, 1)[:context].transpose(0, 1).unsqueeze(0)
        q = query.transpose(0, 1).unsqueeze(0)
        if context == num_queries:
            out = F.scaled_dot_product_attention(q, keys, values, is_causal=True, scale=scale, enable_gqa=True)
        else:
            # Query j sits at position context - num_queries + j and sees keys up to there.
            key_pos = torch.arange(context, device=query.device)
            query_pos = torch.arange(context - num_queries, context, device=query.device)
            mask = key_pos[None, :] <= query_pos[:, None]
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=scale, enable_gqa=True)
        return out.squeeze(0).transpose(0, 1)
