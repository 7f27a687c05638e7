"""The worker: runs one scheduled step over the paged KV cache and samples (model_runner.py), with
batch building, CUDA graphs, the draws' copy to the host and KV sizing beside it. Of the engine it
reads engine/messages.py alone."""
