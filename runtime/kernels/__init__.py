"""Triton GPU kernels. Imported only when the runtime runs on CUDA; CPU installs need no Triton."""
