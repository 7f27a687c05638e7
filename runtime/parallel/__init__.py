"""Tensor parallelism: one model split across ranks of a torch.distributed process group."""
