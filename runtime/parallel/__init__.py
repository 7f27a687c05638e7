"""Tensor and pipeline parallelism, the model side: the layers and weights of one rank's share of a model."""
