"""Greedy decoding straight through a model's forward over the paged KV cache: in one process, or
in one process per tensor-parallel rank or per pipeline stage.

Steps are built as the engine builds them (StepInput -> build_batch -> to_device), without the
scheduler: the first step prefills every prompt, each later step decodes one token per prompt. Each
prompt owns a fixed run of blocks that holds its prompt and every new token.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import LlamaConfig
from transformers import LlamaForCausalLM as HFLlamaForCausalLM

from shoal.runtime.engine.messages import RowInput, StepInput
from shoal.runtime.layers.attention import AttentionMetadata
from shoal.runtime.layers.attention_torch import TorchAttentionBackend
from shoal.runtime.layers.ops import Kernels, TorchOps
from shoal.runtime.model.arch_config import ModelArchConfig
from shoal.runtime.model.llama import LlamaForCausalLM
from shoal.runtime.model.loader import ModelSource, build_model, load_hf_config
from shoal.runtime.model.placement import Placement
from shoal.runtime.parallel.pipeline_stage import (
    StageLayout,
    forward_stage,
    recv_intermediate,
    send_intermediate,
    split_layers,
)
from shoal.runtime.parallel.sharded_llama import ModelShare, build_sharded_model
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


def save_random_llama(path: Path, num_hidden_layers: int) -> Path:
    """A tiny Llama with random weights, saved as an HF checkpoint: q/k/v and o biases, an untied LM
    head, a vocabulary of 255 (it leaves padding on the last of 2 tensor-parallel ranks)."""
    config = LlamaConfig(
        vocab_size=255,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        initializer_range=0.2,  # decisive logits: greedy picks are not near-ties
        attention_bias=True,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    HFLlamaForCausalLM(config).save_pretrained(path)
    return path


def run_rank(rank: int, world_size: int, init_file: Path, model_dir: Path, prompts, max_new_tokens, out: Path):
    """One tensor-parallel rank (torch.multiprocessing.spawn's target): every rank decodes, rank 0
    saves what it got."""

    def build(arch: ModelArchConfig, source: ModelSource) -> LlamaForCausalLM:
        tp = TensorParallel(rank, world_size)
        return build_sharded_model(arch, source, KERNELS, PLACEMENT, arch.max_position_embeddings, ModelShare(tp))

    _decode_in_group(rank, world_size, init_file, model_dir, build, prompts, max_new_tokens, out, saving_rank=0)


def run_stage(rank: int, world_size: int, init_file: Path, model_dir: Path, prompts, max_new_tokens, out: Path):
    """One pipeline stage (torch.multiprocessing.spawn's target; rank r runs stage r of split_layers):
    every stage decodes, the last saves what it got."""

    def build(arch: ModelArchConfig, source: ModelSource) -> PipelinedStage:
        layout = split_layers(arch.num_hidden_layers, world_size)[rank]
        model = build_sharded_model(
            arch, source, KERNELS, PLACEMENT, arch.max_position_embeddings, ModelShare(TensorParallel(0, 1), layout)
        )
        return PipelinedStage(model, layout)

    last = world_size - 1
    _decode_in_group(rank, world_size, init_file, model_dir, build, prompts, max_new_tokens, out, saving_rank=last)


def _decode_in_group(rank, world_size, init_file, model_dir, build, prompts, max_new_tokens, out, saving_rank):
    torch.set_num_threads(1)  # the ranks share the machine's few cores
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        source = ModelSource("safetensors", model_dir)
        model = build(ModelArchConfig.from_hf(load_hf_config(source)), source)
        run = greedy_decode(model, prompts, max_new_tokens)
        if rank == saving_rank:
            torch.save({"tokens": run.tokens, "logits": run.logits}, out)
    finally:
        dist.destroy_process_group()
    # Exit now: gloo's teardown at interpreter exit sometimes aborts the process (SIGABRT, "terminate
    # called without an active exception", torch 2.13) after all its work is done and saved.
    os._exit(0)


class PipelinedStage:
    """A stage in its process, as greedy_decode drives a model: its forward receives from the previous
    stage's process and sends to the next's; compute_logits gives every stage the last stage's logits
    (broadcast), so every stage appends the same tokens and builds the same next batch."""

    def __init__(self, model: LlamaForCausalLM, layout: StageLayout):
        self.model, self.layout = model, layout

    def __call__(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        received = None
        if not self.layout.is_first:
            hidden_size, stage = self.model.arch.hidden_size, self.layout.stage
            received = recv_intermediate(len(input_ids), hidden_size, PLACEMENT.dtype, PLACEMENT.device, stage - 1)
        out = forward_stage(self.model, self.layout, input_ids, positions, meta, received)
        if self.layout.is_last:
            return out
        send_intermediate(out, self.layout.stage + 1)
        return out.hidden  # only indexed: compute_logits here waits for the last stage's

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.layout.is_last:
            logits = self.model.compute_logits(hidden)
        else:
            logits = torch.empty((hidden.shape[0], self.model.arch.vocab_size), dtype=torch.float32)
        dist.broadcast(logits, src=self.layout.num_stages - 1)
        return logits

    def allocate_kv_caches(self, *args) -> list[torch.Tensor]:
        return self.model.allocate_kv_caches(*args)

    def release_kv_caches(self) -> None:
        self.model.release_kv_caches()
