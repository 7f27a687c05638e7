"""One rank's part of the engine: its model, its KV pool and the worker that runs them.

Every rank of a tensor-parallel runtime runs `build_rank` in lockstep (the profile run, the pool's
size and the CUDA graphs' capture each take collectives), rank 0 inside build.py, the others in
their worker processes (ranks/worker_main.py). A single-GPU runtime is rank 0 of one.
"""

import logging
from dataclasses import dataclass

import torch
import torch.distributed as dist

from shoal.runtime.config import CPU_MAX_NUM_BATCHED_TOKENS, GPU_MAX_NUM_BATCHED_TOKENS, EngineConfig
from shoal.runtime.layers.attention_torch import TorchAttentionBackend
from shoal.runtime.layers.ops import Kernels, TorchOps, TritonOps
from shoal.runtime.model.arch_config import ModelArchConfig
from shoal.runtime.model.llama import LlamaForCausalLM
from shoal.runtime.model.loader import ModelSource, build_model, load_hf_config, materialize, resolve_model_source
from shoal.runtime.model.placement import Placement
from shoal.runtime.parallel.pipeline_stage import PipelineGroups, split_layers, stage_arch
from shoal.runtime.parallel.sharded_llama import ModelShare, build_sharded_model, shard_arch
from shoal.runtime.parallel.tensor_parallel import TensorParallel
from shoal.runtime.sampling.sampler import Sampler
from shoal.runtime.speculative.config import DRAFT_MODEL
from shoal.runtime.startup import StartupClock
from shoal.runtime.worker.draft_runner import DraftModelRunner
from shoal.runtime.worker.fault_injection import StepMemoryLimit
from shoal.runtime.worker.kv_cache_sizing import (
    CPU_DEFAULT_KV_CACHE_BYTES,
    KVCacheShape,
    StepBounds,
    gpu_kv_budget,
    num_kv_blocks,
    profile_activation_bytes,
)
from shoal.runtime.worker.model_runner import ModelRunner

log = logging.getLogger(__name__)

SINGLE_RANK = TensorParallel(rank=0, world_size=1)


@dataclass
class RankBuild:
    runner: ModelRunner
    draft_runner: DraftModelRunner | None
    arch: ModelArchConfig  # the whole model's
    device: torch.device
    dtype: torch.dtype
    max_model_len: int  # lowered to what the KV pool holds, when the model's own window does not fit
    token_budget: int  # tokens per step
    num_blocks: int  # the same on every rank
    free_memory_tokens: int | None  # on a GPU: what the memory free after loading the weights would hold


def resolve_device(name: str, rank: int = 0) -> torch.device:
    """auto: CUDA where there is one; on CUDA, rank r uses the r-th visible GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but CUDA is not available")
    if name != "cuda":
        return torch.device(name)
    if rank >= torch.cuda.device_count():
        raise ValueError(f"rank {rank} needs GPU {rank}, but {torch.cuda.device_count()} are visible")
    torch.cuda.set_device(rank)
    return torch.device("cuda", rank)


def resolve_dtype(name: str, arch: ModelArchConfig, device: torch.device) -> torch.dtype:
    """auto: float32 on CPU; on a GPU the checkpoint's half type, bfloat16 for float32 checkpoints."""
    if name != "auto":
        return getattr(torch, name)
    if device.type == "cpu":
        return torch.float32
    return torch.float16 if arch.torch_dtype == "float16" else torch.bfloat16


def resolve_token_budget(configured: int | None, device: torch.device) -> int:
    """The token budget per step: as configured, or the device's default (see runtime/config.py)."""
    if configured is not None:
        return configured
    return GPU_MAX_NUM_BATCHED_TOKENS if device.type == "cuda" else CPU_MAX_NUM_BATCHED_TOKENS


def select_kernels(name: str, arch: ModelArchConfig, block_size: int, placement: Placement) -> Kernels:
    """`arch` is the shape this rank runs (its share of the heads under tensor parallelism)."""
    device = placement.device
    if name == "torch" or (name == "auto" and device.type != "cuda"):
        return Kernels(TorchAttentionBackend(), TorchOps())
    if device.type != "cuda":
        raise ValueError("--kernels triton needs a CUDA device")
    from shoal.runtime.layers.attention_triton import TritonAttentionBackend

    attention = TritonAttentionBackend(
        arch.num_attention_heads, arch.num_key_value_heads, arch.head_dim, block_size, placement.dtype, device
    )
    return Kernels(attention, TritonOps())


def check_parallel_fit(config: EngineConfig, source: ModelSource) -> None:
    """Refuses, before any rank starts, a split the model's shape does not allow."""
    arch = ModelArchConfig.from_hf(load_hf_config(source))
    shard_arch(arch, config.tensor_parallel_size)
    split_layers(arch.num_hidden_layers, config.pipeline_parallel_size)


def build_rank(
    config: EngineConfig,
    source: ModelSource,
    tp: TensorParallel,
    pipeline: PipelineGroups | None,
    clock: StartupClock,
) -> RankBuild:
    """This rank's model with its share of the weights (its heads under tensor parallelism, its
    layers as a pipeline stage), its KV pool and CUDA graphs; ranks must call it together."""
    arch = ModelArchConfig.from_hf(load_hf_config(source))
    links = pipeline.links(arch) if pipeline is not None else None
    layout = links.layout if links is not None else None
    rank_arch = shard_arch(stage_arch(arch, layout) if layout is not None else arch, tp.world_size)
    device = resolve_device(config.device, tp.rank + (layout.stage * tp.world_size if layout is not None else 0))
    if links is not None and device.type == "cuda":
        raise ValueError("pipeline parallelism runs on CPUs (gloo) so far; on GPUs use tensor parallelism")
    dtype = resolve_dtype(config.dtype, arch, device)
    max_model_len = context_window(config, arch)
    token_budget = resolve_token_budget(config.max_num_batched_tokens, device)
    placement = Placement(device, dtype)
    kernels = select_kernels(config.kernels, rank_arch, config.block_size, placement)
    if links is None and tp.world_size == 1:
        model = build_model(arch, source, kernels, placement, max_model_len, config.seed)
    else:
        model = build_sharded_model(arch, source, kernels, placement, max_model_len, ModelShare(tp, layout))
    draft = _build_draft_model(config, arch, placement, max_model_len)
    clock.lap("model_load")

    free_memory_tokens = None
    if config.kv_cache_memory is not None:
        budget = config.kv_cache_memory
    elif device.type == "cuda":
        bounds = StepBounds(token_budget, config.max_num_seqs, max_model_len)
        activations = profile_activation_bytes(model, bounds, config.block_size, placement)
        budget, free = gpu_kv_budget(device, config.gpu_memory_utilization, activations)
        free_memory_tokens = free // rank_arch.kv_bytes_per_token(dtype.itemsize)
        log.info(
            "profiled step peak: %.2f GiB of activations; %.2f GiB free after the weights",
            activations / 2**30,
            free / 2**30,
        )
    else:
        budget = CPU_DEFAULT_KV_CACHE_BYTES
    archs = [rank_arch] + ([draft.arch] if draft is not None else [])
    # Every rank holds the same blocks (one block table addresses all of them): the fewest any fits.
    num_blocks = num_kv_blocks(archs, dtype, config.block_size, budget)
    if config.world_size > 1:
        num_blocks = fewest_over_ranks(num_blocks, device)
    capacity = num_blocks * config.block_size
    if max_model_len > capacity:
        if config.max_model_len is not None:
            raise ValueError(
                f"--max-model-len {max_model_len} does not fit in the KV cache ({capacity} tokens); "
                "raise --kv-cache-memory or lower --max-model-len"
            )
        log.warning("context window capped at the KV cache's %d tokens (the model allows %d)", capacity, max_model_len)
        max_model_len = capacity
    log.info(
        "KV cache: %d blocks of %d tokens (%d tokens), %s on %s", num_blocks, config.block_size, capacity, dtype, device
    )

    memory_limit = None
    if config.fault_oom_above_tokens is not None:
        memory_limit = StepMemoryLimit(config.fault_oom_above_tokens)
        log.warning(
            "fault injection is on (for testing only): steps of over %d tokens run out of memory",
            memory_limit.max_tokens,
        )
    kv = KVCacheShape(num_blocks, config.block_size, placement)
    runner = ModelRunner(model, Sampler(device, config.seed), kv, memory_limit, links)
    draft_runner = DraftModelRunner(draft, kv) if draft is not None else None
    clock.lap("kv_cache")
    if device.type == "cuda" and not config.enforce_eager:
        runner.capture_decode_graphs(_decode_graph_batch(config), max_model_len)
        if draft_runner is not None:
            draft_runner.capture_decode_graphs(config.max_num_seqs, max_model_len)
        clock.lap("cuda_graphs")
    return RankBuild(
        runner, draft_runner, arch, device, dtype, max_model_len, token_budget, num_blocks, free_memory_tokens
    )


def fewest_over_ranks(value: int, device: torch.device) -> int:
    """The smallest of every rank's value, over the default process group (each rank must call it)."""
    x = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(x, op=dist.ReduceOp.MIN)
    return int(x.item())


def context_window(config: EngineConfig, arch: ModelArchConfig) -> int:
    """The model's window, lowered by --max-model-len; sliding-window attention is not implemented,
    so a model with one is served only up to its window, where full attention is exact."""
    limit = arch.max_position_embeddings
    if arch.sliding_window is not None:
        limit = min(limit, arch.sliding_window)
    if config.max_model_len is None:
        return limit
    if config.max_model_len > limit:
        raise ValueError(f"--max-model-len {config.max_model_len} exceeds what this model supports ({limit})")
    return config.max_model_len


def _decode_graph_batch(config: EngineConfig) -> int:
    """The most sequences a decode-shaped step has: a request with k drafts runs as k + 1 of them."""
    speculative = config.speculative
    return config.max_num_seqs * (1 + speculative.num_speculative_tokens if speculative.enabled else 1)


def _build_draft_model(
    config: EngineConfig, arch: ModelArchConfig, placement: Placement, max_model_len: int
) -> LlamaForCausalLM | None:
    """The draft model of the draft_model method, on the target's device and dtype, loaded as the
    target is (random weights under --load-format dummy: the same seed then makes a draft with the
    target's own shapes the very same model, which accepts everything)."""
    speculative = config.speculative
    if speculative.method != DRAFT_MODEL:
        return None
    load_format = "dummy" if config.load_format == "dummy" else "auto"
    source = materialize(resolve_model_source(speculative.model, load_format))
    draft_arch = ModelArchConfig.from_hf(load_hf_config(source))
    if draft_arch.vocab_size != arch.vocab_size:
        raise ValueError(
            f"the draft model {speculative.model!r} has a vocabulary of {draft_arch.vocab_size} tokens and the "
            f"model {arch.vocab_size}: a draft model must share the model's tokenizer"
        )
    kernels = select_kernels(config.kernels, draft_arch, config.block_size, placement)
    log.info("draft model: %s (%d layers)", source.describe(), draft_arch.num_hidden_layers)
    return build_model(draft_arch, source, kernels, placement, max_model_len, config.seed)
