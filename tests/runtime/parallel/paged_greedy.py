"""Greedy decoding straight through a model's forward over the paged KV cache, one rank or many.

Steps are built as the engine builds them (StepInput -> build_batch -> to_device), without the
scheduler: the first step prefills every prompt, each later step decodes one token per prompt. Each
prompt owns a fixed run of blocks that holds its prompt and every new token.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from shoal.runtime.engine.messages import RowInput, StepInput
from shoal.runtime.layers.attention_torch import TorchAttentionBackend
from shoal.runtime.layers.ops import Kernels, TorchOps
from shoal.runtime.model.arch_config import ModelArchConfig
from shoal.runtime.model.llama import LlamaForCausalLM
from shoal.runtime.model.loader import ModelSource, build_model, load_hf_config
from shoal.runtime.model.placement import Placement
from shoal.runtime.parallel.sharded_llama import build_sharded_model
from shoal.runtime.parallel.tensor_parallel import TensorParallel
from shoal.runtime.sampling.params import SamplingParams
from shoal.runtime.worker.batch_inputs import build_batch

BLOCK_SIZE = 16
PLACEMENT = Placement(torch.device("cpu"), torch.float32)
KERNELS = Kernels(TorchAttentionBackend(), TorchOps())


@dataclass
class GreedyRun:
    tokens: list[list[int]]  # per prompt, the new tokens
    logits: torch.Tensor  # [steps, prompts, vocab]: the logits each token was drawn from


@torch.inference_mode()
def greedy_decode(model: LlamaForCausalLM, prompts: list[list[int]], max_new_tokens: int) -> GreedyRun:
    blocks_each = -(-(max(map(len, prompts)) + max_new_tokens) // BLOCK_SIZE)
    model.allocate_kv_caches(blocks_each * len(prompts), BLOCK_SIZE, PLACEMENT.dtype, PLACEMENT.device)
    tables = [list(range(i * blocks_each, (i + 1) * blocks_each)) for i in range(len(prompts))]
    sequences = [list(p) for p in prompts]
    greedy = SamplingParams(temperature=0.0)
    rows = [RowInput(str(i), 0, len(p), list(p), tables[i], greedy) for i, p in enumerate(prompts)]
    step_logits = []
    for _ in range(max_new_tokens):
        batch = build_batch(StepInput(rows, []), BLOCK_SIZE)
        input_ids, positions, meta = batch.to_device(PLACEMENT.device)
        hidden = model(input_ids, positions, meta)
        logits = model.compute_logits(hidden[batch.sample_token_indices])
        step_logits.append(logits)
        for sequence, token in zip(sequences, logits.argmax(dim=-1).tolist(), strict=True):
            sequence.append(token)
        rows = [RowInput(str(i), len(s) - 1, 1, [s[-1]], tables[i], greedy) for i, s in enumerate(sequences)]
    model.release_kv_caches()
    new_tokens = [s[len(p) :] for s, p in zip(sequences, prompts, strict=True)]
    return GreedyRun(new_tokens, torch.stack(step_logits))


def full_model(model_dir: Path) -> LlamaForCausalLM:
    source = ModelSource("safetensors", model_dir)
    arch = ModelArchConfig.from_hf(load_hf_config(source))
    return build_model(arch, source, KERNELS, PLACEMENT, arch.max_position_embeddings)


def run_rank(rank: int, world_size: int, init_file: Path, model_dir: Path, prompts, max_new_tokens, out: Path):
    """One process of the group (torch.multiprocessing.spawn's target): every rank decodes, rank 0
    saves what it got."""
    torch.set_num_threads(1)  # the ranks share the machine's few cores
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        source = ModelSource("safetensors", model_dir)
        arch = ModelArchConfig.from_hf(load_hf_config(source))
        tp = TensorParallel(rank, world_size)
        model = build_sharded_model(arch, source, KERNELS, PLACEMENT, arch.max_position_embeddings, tp)
        run = greedy_decode(model, prompts, max_new_tokens)
        if rank == 0:
            torch.save({"tokens": run.tokens, "logits": run.logits}, out)
    finally:
        dist.destroy_process_group()
    # Exit now: gloo's teardown at interpreter exit sometimes aborts the process (SIGABRT, "terminate
    # called without an active exception", torch 2.13) after all its work is done and saved.
    os._exit(0)
