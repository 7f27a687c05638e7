"""Sampling parameters, their per-row tensors, and the batched sampler."""
