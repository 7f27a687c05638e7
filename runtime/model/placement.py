"""Where a model's tensors live and in what type: resolved once (runtime/build.py), passed whole."""

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Placement:
    device: torch.device
    dtype: torch.dtype
