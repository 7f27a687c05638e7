"""A linear layer whose weight stacks several checkpoint tensors (q/k/v, gate/up) for one matmul."""

import torch
from torch import nn


class MergedLinear(nn.Linear):
    def __init__(self, in_features: int, output_sizes: list[int], bias: bool = False):
        super().__init__(in_features, sum(output_sizes), bias=bias)
        self.output_sizes = list(output_sizes)

    def load_shard(self, index: int, tensor: torch.Tensor, is_bias: bool = False) -> None:
        start = sum(self.output_sizes[:index])
        target = (self.bias if is_bias else self.weight).data[start : start + self.output_sizes[index]]
        if target.shape != tensor.shape:
            raise ValueError(f"shard {index}: expected shape {tuple(target.shape)}, got {tuple(tensor.shape)}")
        target.copy_(tensor)
