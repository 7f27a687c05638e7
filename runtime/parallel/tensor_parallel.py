"""Megatron-style tensor parallelism: the layers whose outputs cross ranks.

A rank holds a slice of every large weight. Column-parallel layers (merged q/k/v, merged gate/up)
split their output and need no communication: each rank's slice feeds its own attention heads or
MLP columns, so they are the model's own MergedLinear, built smaller (sharded_llama.py loads their
slices). The layers here are where the slices meet again: a row-parallel linear (o_proj, down_proj)
sums its partial products over ranks, the vocab-parallel embedding sums the rows only one rank
holds, and the LM head gathers each rank's slice of the vocabulary into full logits.
"""

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class TensorParallel:
    """This process's place in the tensor-parallel group; `group` None is the default process group."""

    rank: int
    world_size: int
    group: dist.ProcessGroup | None = None

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"tensor parallel rank {self.rank} is not in [0, world_size={self.world_size})")

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        """The sum over ranks, in place."""
        if self.world_size > 1:
            dist.all_reduce(x, group=self.group)
        return x

    def broadcast_from_first(self, x: torch.Tensor) -> torch.Tensor:
        """Rank 0's x, into every rank's x (in place)."""
        if self.world_size > 1:
            dist.broadcast(x, src=dist.get_global_rank(self.group, 0) if self.group else 0, group=self.group)
        return x

    def all_gather_last_dim(self, x: torch.Tensor) -> torch.Tensor:
        """Every rank's x, concatenated in rank order along the last dimension."""
        if self.world_size == 1:
            return x
        parts = [torch.empty_like(x) for _ in range(self.world_size)]
        dist.all_gather(parts, x.contiguous(), group=self.group)
        return torch.cat(parts, dim=-1)


class RowParallelLinear(nn.Linear):
    """y = x W^T + b with x and W split along the input dimension: each rank's partial product is
    summed over ranks, and the (replicated) bias is added once, after the sum."""

    def __init__(self, in_features_per_rank: int, out_features: int, bias: bool, tp: TensorParallel):
        super().__init__(in_features_per_rank, out_features, bias=bias)
        self.tp = tp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.tp.all_reduce(F.linear(x, self.weight))
        return out if self.bias is None else out + self.bias


def vocab_per_rank(vocab_size: int, world_size: int) -> int:
    """Rows of the embedding (and LM head) each rank holds; the last rank's tail is zero padding when
    the vocabulary does not divide evenly."""
    return -(-vocab_size // world_size)


class VocabParallelEmbedding(nn.Embedding):
    """Rank r holds rows [r * n, (r + 1) * n): it looks up the ids in its range, zeros for the rest,
    and the sum over ranks is the full lookup (exactly one rank holds each id)."""

    def __init__(self, vocab_size: int, hidden_size: int, tp: TensorParallel):
        super().__init__(vocab_per_rank(vocab_size, tp.world_size), hidden_size)
        self.tp = tp
        self.vocab_start = tp.rank * self.num_embeddings

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        local = input_ids - self.vocab_start
        elsewhere = (local < 0) | (local >= self.num_embeddings)
        out = F.embedding(local.masked_fill(elsewhere, 0), self.weight)
        return self.tp.all_reduce(out.masked_fill_(elsewhere.unsqueeze(-1), 0))


class ParallelLMHead(nn.Linear):
    """Each rank computes the logits of its vocabulary slice; all ranks get the full logits, in vocab
    order, padding dropped (sampling runs on full rows)."""

    def __init__(self, hidden_size: int, vocab_size: int, tp: TensorParallel):
        super().__init__(hidden_size, vocab_per_rank(vocab_size, tp.world_size), bias=False)
        self.tp = tp
        self.vocab_size = vocab_size

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.tp.all_gather_last_dim(F.linear(hidden, self.weight))[..., : self.vocab_size]
