"""The model's small operations, in two implementations: plain torch (CPU, and the reference) and
Triton kernels (CUDA), chosen once when the model is built."""

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from shoal.runtime.layers.attention import AttentionBackend


class LayerOps(Protocol):
    def rms_norm(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor: ...

    def add_rms_norm(
        self, x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def silu_and_mul(self, gate_up: torch.Tensor) -> torch.Tensor: ...

    def rotary(
        self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass(frozen=True)
class Kernels:
    """What a model is built with: its attention backend and its small ops."""

    attention: AttentionBackend
    ops: LayerOps


class TorchOps:
    """HF transformers' own arithmetic, operation for operation, so CPU outputs match it exactly."""

    def rms_norm(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        x32 = x.float()
        return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)

    def add_rms_norm(self, x, residual, weight, eps):
        residual = residual + x
        return self.rms_norm(residual, weight, eps), residual

    def silu_and_mul(self, gate_up: torch.Tensor) -> torch.Tensor:
        gate, up = gate_up.chunk(2, dim=-1)
        return F.silu(gate) * up

    def rotary(self, positions, q, k, cos, sin):
        cos = cos[positions].unsqueeze(1).to(q.dtype)
        sin = sin[positions].unsqueeze(1).to(q.dtype)
        return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class TritonOps:
    """One fused kernel per operation (runtime/kernels/fused_ops.py)."""

    def __init__(self):
        from shoal.runtime.kernels import fused_ops

        self._kernels = fused_ops

    def rms_norm(self, x, weight, eps):
        return self._kernels.rms_norm(x, weight, eps)

    def add_rms_norm(self, x, residual, weight, eps):
        return self._kernels.rms_norm(x, weight, eps, residual=residual), residual

    def silu_and_mul(self, gate_up):
        return self._kernels.silu_and_mul(gate_up)

    def rotary(self, positions, q, k, cos, sin):
        self._kernels.rotary_in_place(q, k, positions, cos, sin)
        return q, k
