"""Triton: the small per-layer operations, one launch each instead of several torch kernels.

At batch 1 a decode step is bound by reading the weights; the dozens of tiny elementwise kernels
torch launches per layer (norm: square, mean, rsqrt, multiply, cast; rotary: gather, negate, cat,
multiply, add) then cost a fifth of the step. Each of these is one kernel. They compute in float32
and round once, matching HF transformers' float32 math; inputs are one row per token.
"""

import torch
import triton
import triton.language as tl


@triton.jit
def _rms_norm_kernel(
    out_ptr,
    x_ptr,
    residual_ptr,
    weight_ptr,
    x_stride,
    residual_stride,
    out_stride,
    eps,
    N: tl.constexpr,
    N_PAD: tl.constexpr,
    ADD_RESIDUAL: tl.constexpr,
):
    row = tl.program_id(0)
    cols = tl.arange(0, N_PAD)
    mask = cols < N
    x = tl.load(x_ptr + row * x_stride + cols, mask=mask, other=0.0)
    if ADD_RESIDUAL:
        # As HF does: the sum is rounded to the model's dtype, stored as the new residual, then normalised.
        x = (x + tl.load(residual_ptr + row * residual_stride + cols, mask=mask, other=0.0)).to(x_ptr.dtype.element_ty)
        tl.store(residual_ptr + row * residual_stride + cols, x, mask=mask)
    x32 = x.to(tl.float32)
    variance = tl.sum(x32 * x32, axis=0) / N
    normed = (x32 * tl.rsqrt(variance + eps)).to(x_ptr.dtype.element_ty)
    weight = tl.load(weight_ptr + cols, mask=mask)
    tl.store(out_ptr + row * out_stride + cols, weight * normed, mask=mask)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None) -> torch.Tensor:
    """RMSNorm of x, or of x + residual (then residual is updated in place to x + residual)."""
    out = torch.empty_like(x)
    n = x.shape[-1]
    _rms_norm_kernel[(x.shape[0],)](
        out,
        x,
        residual if residual is not None else x,
        weight,
        x.stride(0),
        residual.stride(0) if residual is not None else 0,
        out.stride(0),
        eps,
        N=n,
        N_PAD=triton.next_power_of_2(n),
        ADD_RESIDUAL=residual is not None,
        num_warps=4 if n <= 4096 else 8,
    )
    return out


@triton.jit
def _silu_and_mul_kernel(out_ptr, x_ptr, x_stride, out_stride, N: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < N
    gate = tl.load(x_ptr + row * x_stride + cols, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(x_ptr + row * x_stride + N + cols, mask=mask, other=0.0).to(tl.float32)
    silu = gate / (1.0 + tl.exp(-gate))
    tl.store(out_ptr + row * out_stride + cols, (silu * up).to(out_ptr.dtype.element_ty), mask=mask)


def silu_and_mul(gate_up: torch.Tensor) -> torch.Tensor:
    rows, width = gate_up.shape
    n = width // 2
    out = torch.empty((rows, n), dtype=gate_up.dtype, device=gate_up.device)
    block = 1024
    _silu_and_mul_kernel[(rows, triton.cdiv(n, block))](
        out, gate_up, gate_up.stride(0), out.stride(0), N=n, BLOCK=block
    )
    return out


@triton.jit(do_not_specialize_on_alignment=["positions_ptr"])  # a slice of the step's positions
def _rotary_kernel(
    q_ptr,
    k_ptr,
    cos_ptr,
    sin_ptr,
    positions_ptr,
    q_stride,
    k_stride,
    table_stride,
    NUM_Q_HEADS: tl.constexpr,
    NUM_K_HEADS: tl.constexpr,
    HEADS_PAD: tl.constexpr,
    HALF: tl.constexpr,
    HALF_PAD: tl.constexpr,
):
    token = tl.program_id(0)
    position = tl.load(positions_ptr + token)
    d = tl.arange(0, HALF_PAD)
    d_ok = d < HALF
    cos = tl.load(cos_ptr + position * table_stride + d, mask=d_ok, other=0.0)[None, :]
    sin = tl.load(sin_ptr + position * table_stride + d, mask=d_ok, other=0.0)[None, :]
    heads = tl.arange(0, HEADS_PAD)[:, None]
    offsets = heads * (2 * HALF) + d[None, :]
    _rotate(q_ptr + token * q_stride + offsets, (heads < NUM_Q_HEADS) & d_ok[None, :], cos, sin, HALF)
    _rotate(k_ptr + token * k_stride + offsets, (heads < NUM_K_HEADS) & d_ok[None, :], cos, sin, HALF)


@triton.jit
def _rotate(pointers, mask, cos, sin, HALF: tl.constexpr):
    first = tl.load(pointers, mask=mask, other=0.0)
    second = tl.load(pointers + HALF, mask=mask, other=0.0)
    f32, s32 = first.to(tl.float32), second.to(tl.float32)
    tl.store(pointers, (f32 * cos - s32 * sin).to(first.dtype), mask=mask)
    tl.store(pointers + HALF, (s32 * cos + f32 * sin).to(first.dtype), mask=mask)


def rotary_in_place(
    q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> None:
    """q: [tokens, heads, head_dim], k: [tokens, kv_heads, head_dim] (rows may be strided views of
    the fused qkv output); cos/sin: [max_position, head_dim] float32 (both halves equal)."""
    tokens, num_q_heads, head_dim = q.shape
    assert q.stride()[1:] == k.stride()[1:] == (head_dim, 1)
    _rotary_kernel[(tokens,)](
        q,
        k,
        cos,
        sin,
        positions,
        q.stride(0),
        k.stride(0),
        cos.stride(0),
        NUM_Q_HEADS=num_q_heads,
        NUM_K_HEADS=k.shape[1],
        HEADS_PAD=triton.next_power_of_2(num_q_heads),
        HALF=head_dim // 2,
        HALF_PAD=triton.next_power_of_2(head_dim // 2),
    )
