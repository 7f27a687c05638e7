"""A linear layer whose weight stacks several checkpoint tensors (q/k/v, gate/up) for one matmul."""

import torch
from torch import nn


class MergedLinear(nn.Linear):
    def __init__(self, in_features: int, output_sizes: list[int], bias: bool = False):
        super().__init__(in_features, sum(output_sizes), bias=bias)
        self.output_sizes = list(output_sizes)

    def shard(self, index: int, is_bias: bool = False) -> torch.Tensor:
        """The view of the weight (or bias) that holds checkpoint tensor `index`; copies into it land in place."""
        start = sum(self.output_sizes[:index])
        return (self.bias if is_bias else self.weight).data[start : start + self.output_sizes[index]]
