"""Triton paged attention over the KV cache, for the flat, ragged batches the model runner builds.

Two kernels, both GQA-aware (one program serves every query head of a KV head, so each K/V tile is
read once per group) with fp32 accumulation and online softmax:

* prefill: query tiles of BLOCK_Q tokens of one sequence attend causally to all earlier tokens of
  that sequence, read through its block table, so chunked prefill and prefix-cache hits need
  nothing special. Sequence boundaries are found in-kernel by binary search over query_start_loc.
* decode (one query token per sequence): flash-decoding; each sequence's keys are split into up to
  SPLITS ranges processed in parallel, then merged by their log-sum-exp. Small batches with long
  contexts fill the GPU this way.

Decodes come first in the batch (the scheduler orders them so); rows past num_decodes go to the
prefill kernel. A decode row with seq_len 0 (padding in a CUDA-graph batch) writes zeros.
"""

import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

LOG2_E = 1.4426950408889634


@dataclass(frozen=True)
class PagedBatch:
    """The sequences of one attention call, as the kernels read them."""

    block_tables: torch.Tensor  # [num_seqs, max_blocks] int32
    seq_lens: torch.Tensor  # [num_seqs] int32
    query_start_loc: torch.Tensor  # [num_seqs + 1] int32
    num_decodes: int  # leading single-token sequences
    num_seqs: int
    num_prefill_tokens: int  # query tokens past the decodes
    decode_splits: int  # key ranges each decode is split into (1: a single pass)


@triton.jit
def _find_sequence(query_start_loc_ptr, q_block, seq_begin, num_seqs, first_token, BLOCK_Q: tl.constexpr):
    """The sequence owning query tile `q_block`: sequence i owns tiles from
    (qsl[i] - first_token) // BLOCK_Q + (i - seq_begin) on, which leaves room for its ceil(len / BLOCK_Q)."""
    lo = seq_begin
    hi = num_seqs
    while lo < hi:
        mid = (lo + hi) // 2
        start = tl.load(query_start_loc_ptr + mid)
        if (start - first_token) // BLOCK_Q + (mid - seq_begin) <= q_block:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


@triton.jit
def _attend(
    q,
    q_pos,
    key_begin,
    key_end,
    seq,
    kv_head,
    cache_ptr,
    v_offset,
    block_tables_ptr,
    bt_stride,
    c_stride_block,
    c_stride_slot,
    c_stride_head,
    scale_log2,
    d,
    d_ok,
    ROWS: tl.constexpr,
    HEAD_DIM_PAD: tl.constexpr,
    PAGE: tl.constexpr,
    TILE_N: tl.constexpr,
    CAUSAL: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Online softmax of q's rows over keys [key_begin, key_end) of one sequence and KV head, read
    through its block table; returns (running max, running sum, unnormalised output), log2 domain.
    CAUSAL: row i sees keys up to q_pos[i] only."""
    m = tl.full([ROWS], float("-inf"), tl.float32)
    row_sum = tl.zeros([ROWS], tl.float32)
    acc = tl.zeros([ROWS, HEAD_DIM_PAD], tl.float32)
    for start in range(key_begin, key_end, TILE_N):
        k_pos = start + tl.arange(0, TILE_N)
        k_ok = k_pos < key_end
        page = tl.load(block_tables_ptr + seq * bt_stride + k_pos // PAGE, mask=k_ok, other=0)
        base = page.to(tl.int64) * c_stride_block + (k_pos % PAGE) * c_stride_slot + kv_head * c_stride_head
        kv_mask = k_ok[:, None] & d_ok[None, :]
        k = tl.load(cache_ptr + base[:, None] + d[None, :], mask=kv_mask, other=0.0)
        v = tl.load(cache_ptr + v_offset + base[:, None] + d[None, :], mask=kv_mask, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale_log2
        visible = k_ok[None, :]
        if CAUSAL:
            visible = visible & (k_pos[None, :] <= q_pos[:, None])
        s = tl.where(visible, s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - m_safe[:, None])
        alpha = tl.exp2(m - m_safe)
        row_sum = row_sum * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m = m_new
    return m, row_sum, acc


# Values that change from step to step are not specialized on (Triton would otherwise compile a
# variant per value of 1 and per multiple of 16): a kernel compiled once at warm-up covers them all.
@triton.jit(do_not_specialize=["seq_begin", "num_seqs", "bt_stride"], do_not_specialize_on_alignment=["seq_lens_ptr"])
def _prefill_kernel(
    out_ptr,
    q_ptr,
    cache_ptr,
    block_tables_ptr,
    seq_lens_ptr,
    query_start_loc_ptr,
    scale_log2,
    seq_begin,
    num_seqs,
    q_stride_token,
    q_stride_head,
    o_stride_token,
    o_stride_head,
    v_offset,
    c_stride_block,
    c_stride_slot,
    c_stride_head,
    bt_stride,
    GROUP: tl.constexpr,
    GROUP_PAD: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    HEAD_DIM_PAD: tl.constexpr,
    PAGE: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    TILE_N: tl.constexpr,
    PRECISION: tl.constexpr,
):
    q_block = tl.program_id(0)
    kv_head = tl.program_id(1)
    first_token = tl.load(query_start_loc_ptr + seq_begin)
    seq = _find_sequence(query_start_loc_ptr, q_block, seq_begin, num_seqs, first_token, BLOCK_Q)
    q_start = tl.load(query_start_loc_ptr + seq)
    q_len = tl.load(query_start_loc_ptr + seq + 1) - q_start
    local = q_block - ((q_start - first_token) // BLOCK_Q + (seq - seq_begin))
    if local * BLOCK_Q >= q_len:
        return
    seq_len = tl.load(seq_lens_ptr + seq)
    context = seq_len - q_len  # position of the first query token

    BLOCK_M: tl.constexpr = BLOCK_Q * GROUP_PAD
    rows = tl.arange(0, BLOCK_M)
    q_idx = local * BLOCK_Q + rows // GROUP_PAD
    head_in_group = rows % GROUP_PAD
    row_ok = (q_idx < q_len) & (head_in_group < GROUP)
    head = kv_head * GROUP + head_in_group
    d = tl.arange(0, HEAD_DIM_PAD)
    d_ok = d < HEAD_DIM
    q_offsets = (q_start + q_idx)[:, None] * q_stride_token + head[:, None] * q_stride_head + d[None, :]
    q = tl.load(q_ptr + q_offsets, mask=row_ok[:, None] & d_ok[None, :], other=0.0)
    key_end = tl.minimum(seq_len, context + (local + 1) * BLOCK_Q)
    m, row_sum, acc = _attend(
        q,
        context + q_idx,
        0,
        key_end,
        seq,
        kv_head,
        cache_ptr,
        v_offset,
        block_tables_ptr,
        bt_stride,
        c_stride_block,
        c_stride_slot,
        c_stride_head,
        scale_log2,
        d,
        d_ok,
        BLOCK_M,
        HEAD_DIM_PAD,
        PAGE,
        TILE_N,
        True,
        PRECISION,
    )
    out = acc / tl.where(row_sum == 0.0, 1.0, row_sum)[:, None]
    o_offsets = (q_start + q_idx)[:, None] * o_stride_token + head[:, None] * o_stride_head + d[None, :]
    tl.store(out_ptr + o_offsets, out.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & d_ok[None, :])


@triton.jit(do_not_specialize=["bt_stride"], do_not_specialize_on_alignment=["seq_lens_ptr"])
def _decode_kernel(
    out_ptr,
    partial_out_ptr,
    partial_lse_ptr,
    q_ptr,
    cache_ptr,
    block_tables_ptr,
    seq_lens_ptr,
    scale_log2,
    q_stride_token,
    q_stride_head,
    o_stride_token,
    o_stride_head,
    v_offset,
    c_stride_block,
    c_stride_slot,
    c_stride_head,
    bt_stride,
    num_heads,
    GROUP: tl.constexpr,
    GROUP_PAD: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    HEAD_DIM_PAD: tl.constexpr,
    PAGE: tl.constexpr,
    TILE_N: tl.constexpr,
    SPLITS: tl.constexpr,
    PRECISION: tl.constexpr,
):
    seq = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    seq_len = tl.load(seq_lens_ptr + seq)
    tiles_per_split = tl.cdiv(tl.cdiv(seq_len, TILE_N), SPLITS)
    key_begin = split * tiles_per_split * TILE_N
    key_end = tl.minimum(seq_len, key_begin + tiles_per_split * TILE_N)

    rows = tl.arange(0, GROUP_PAD)
    row_ok = rows < GROUP
    head = kv_head * GROUP + rows
    d = tl.arange(0, HEAD_DIM_PAD)
    d_ok = d < HEAD_DIM
    q_mask = row_ok[:, None] & d_ok[None, :]
    q = tl.load(q_ptr + seq * q_stride_token + head[:, None] * q_stride_head + d[None, :], mask=q_mask, other=0.0)

    m, row_sum, acc = _attend(
        q,
        rows,
        key_begin,
        key_end,
        seq,
        kv_head,
        cache_ptr,
        v_offset,
        block_tables_ptr,
        bt_stride,
        c_stride_block,
        c_stride_slot,
        c_stride_head,
        scale_log2,
        d,
        d_ok,
        GROUP_PAD,
        HEAD_DIM_PAD,
        PAGE,
        TILE_N,
        False,
        PRECISION,
    )
    out = acc / tl.where(row_sum == 0.0, 1.0, row_sum)[:, None]
    if SPLITS == 1:
        o_offsets = seq * o_stride_token + head[:, None] * o_stride_head + d[None, :]
        tl.store(out_ptr + o_offsets, out.to(out_ptr.dtype.element_ty), mask=q_mask)
    else:
        lse = tl.where(row_sum == 0.0, float("-inf"), m + tl.log2(tl.where(row_sum == 0.0, 1.0, row_sum)))
        slot = (seq * num_heads + head) * SPLITS + split
        tl.store(partial_lse_ptr + slot, lse, mask=row_ok)
        tl.store(partial_out_ptr + slot[:, None] * HEAD_DIM + d[None, :], out, mask=q_mask)


@triton.jit
def _decode_merge_kernel(
    out_ptr,
    partial_out_ptr,
    partial_lse_ptr,
    o_stride_token,
    o_stride_head,
    num_heads,
    HEAD_DIM: tl.constexpr,
    HEAD_DIM_PAD: tl.constexpr,
    SPLITS: tl.constexpr,
    SPLITS_PAD: tl.constexpr,
):
    seq = tl.program_id(0)
    head = tl.program_id(1)
    splits = tl.arange(0, SPLITS_PAD)
    slot = (seq * num_heads + head) * SPLITS + splits
    lse = tl.load(partial_lse_ptr + slot, mask=splits < SPLITS, other=float("-inf"))
    top = tl.max(lse, 0)
    top = tl.where(top == float("-inf"), 0.0, top)
    weight = tl.exp2(lse - top)
    d = tl.arange(0, HEAD_DIM_PAD)
    d_ok = d < HEAD_DIM
    partial = tl.load(
        partial_out_ptr + slot[:, None] * HEAD_DIM + d[None, :],
        mask=(splits < SPLITS)[:, None] & d_ok[None, :],
        other=0.0,
    )
    total = tl.sum(weight, 0)
    out = tl.sum(partial * weight[:, None], 0) / tl.where(total == 0.0, 1.0, total)
    tl.store(out_ptr + seq * o_stride_token + head * o_stride_head + d, out.to(out_ptr.dtype.element_ty), mask=d_ok)


def decode_splits(num_seqs: int, num_kv_heads: int, max_seq_len: int, num_sms: int, tile_n: int) -> int:
    """Enough key splits to give the GPU about two programs per multiprocessor, no more than the
    longest sequence has tiles (at most 16)."""
    programs = num_seqs * num_kv_heads
    if programs >= 2 * num_sms:
        return 1
    return max(1, min(16, math.ceil(2 * num_sms / programs), math.ceil(max_seq_len / tile_n)))


class PagedAttentionKernels:
    """Launch settings for one model's shapes, chosen once."""

    BLOCK_Q_ROWS = 64  # query rows (tokens x heads of a group) per prefill program
    TILE_N = 64

    def __init__(
        self,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        block_size: int,
        dtype: torch.dtype,
        device: torch.device,
    ):
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.group = num_heads // num_kv_heads
        self.head_dim = head_dim
        self.head_dim_pad = triton.next_power_of_2(head_dim)
        self.block_size = block_size
        self.prefill_group_pad = triton.next_power_of_2(self.group)
        self.block_q = max(1, self.BLOCK_Q_ROWS // self.prefill_group_pad)
        self.decode_group_pad = max(16, self.prefill_group_pad)  # tl.dot wants 16 rows
        self.precision = "ieee" if dtype == torch.float32 else "tf32"
        self.num_sms = torch.cuda.get_device_properties(device).multi_processor_count

    def forward(self, query: torch.Tensor, kv_cache: torch.Tensor, batch: PagedBatch, scale: float) -> torch.Tensor:
        out = torch.empty_like(query)
        num_decodes, num_seqs, block_tables = batch.num_decodes, batch.num_seqs, batch.block_tables
        if num_decodes:
            self._decode(out, query, kv_cache, batch, scale)
        if num_seqs > num_decodes:
            grid = (batch.num_prefill_tokens // self.block_q + (num_seqs - num_decodes), self.num_kv_heads)
            _prefill_kernel[grid](
                out,
                query,
                kv_cache,
                block_tables,
                batch.seq_lens,
                batch.query_start_loc,
                scale * LOG2_E,
                num_decodes,
                num_seqs,
                query.stride(0),
                query.stride(1),
                out.stride(0),
                out.stride(1),
                kv_cache.stride(0),
                kv_cache.stride(1),
                kv_cache.stride(2),
                kv_cache.stride(3),
                block_tables.stride(0),
                GROUP=self.group,
                GROUP_PAD=self.prefill_group_pad,
                HEAD_DIM=self.head_dim,
                HEAD_DIM_PAD=self.head_dim_pad,
                PAGE=self.block_size,
                BLOCK_Q=self.block_q,
                TILE_N=self.TILE_N,
                PRECISION=self.precision,
                num_warps=4,
                num_stages=2,
            )
        return out

    def _decode(self, out, query, kv_cache, batch: PagedBatch, scale: float) -> None:
        num_decodes, splits, block_tables, seq_lens = (
            batch.num_decodes,
            batch.decode_splits,
            batch.block_tables,
            batch.seq_lens,
        )
        partial_out = partial_lse = out  # unused when there is one split
        if splits > 1:
            partial_out = torch.empty(
                (num_decodes, self.num_heads, splits, self.head_dim), dtype=torch.float32, device=out.device
            )
            partial_lse = torch.empty((num_decodes, self.num_heads, splits), dtype=torch.float32, device=out.device)
        _decode_kernel[(num_decodes, self.num_kv_heads, splits)](
            out,
            partial_out,
            partial_lse,
            query,
            kv_cache,
            block_tables,
            seq_lens,
            scale * LOG2_E,
            query.stride(0),
            query.stride(1),
            out.stride(0),
            out.stride(1),
            kv_cache.stride(0),
            kv_cache.stride(1),
            kv_cache.stride(2),
            kv_cache.stride(3),
            block_tables.stride(0),
            self.num_heads,
            GROUP=self.group,
            GROUP_PAD=self.decode_group_pad,
            HEAD_DIM=self.head_dim,
            HEAD_DIM_PAD=self.head_dim_pad,
            PAGE=self.block_size,
            TILE_N=self.TILE_N,
            SPLITS=splits,
            PRECISION=self.precision,
            num_warps=4,
            num_stages=2,
        )
        if splits > 1:
            _decode_merge_kernel[(num_decodes, self.num_heads)](
                out,
                partial_out,
                partial_lse,
                out.stride(0),
                out.stride(1),
                self.num_heads,
                HEAD_DIM=self.head_dim,
                HEAD_DIM_PAD=self.head_dim_pad,
                SPLITS=splits,
                SPLITS_PAD=triton.next_power_of_2(splits),
            )
