"""Assembles an engine from an EngineConfig: model, tokenizer, KV pool, worker, scheduler."""

import gc
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from shoal.runtime.config import CPU_MAX_NUM_BATCHED_TOKENS, GPU_MAX_NUM_BATCHED_TOKENS, EngineConfig
from shoal.runtime.engine.block_manager import BlockManager
from shoal.runtime.engine.drafter import Drafter
from shoal.runtime.engine.llm_engine import LLMEngine
from shoal.runtime.engine.output_processor import OutputProcessor
from shoal.runtime.engine.scheduler import Scheduler, SchedulerConfig
from shoal.runtime.engine.stop_conditions import StopLimits
from shoal.runtime.layers.attention_torch import TorchAttentionBackend
from shoal.runtime.layers.ops import Kernels, TorchOps, TritonOps
from shoal.runtime.model.arch_config import ModelArchConfig
from shoal.runtime.model.llama import LlamaForCausalLM
from shoal.runtime.model.loader import build_model, load_hf_config, materialize, resolve_model_source
from shoal.runtime.model.placement import Placement
from shoal.runtime.sampling.sampler import Sampler
from shoal.runtime.speculative.config import DRAFT_MODEL
from shoal.runtime.startup import StartupBreakdown, StartupClock
from shoal.runtime.structured.compiler import GrammarCompiler
from shoal.runtime.tokenization.tokenizer import eos_token_ids, load_tokenizer
from shoal.runtime.warmup import warm_up
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


@dataclass(frozen=True)
class ModelInfo:
    served_model_name: str
    source: str
    architecture: str
    dtype: str
    device: str
    max_model_len: int
    vocab_size: int
    block_size: int
    eos_token_ids: tuple[int, ...]
    has_tokenizer: bool
    has_chat_template: bool
    kv_cache_tokens: int
    free_memory_tokens: int | None  # on a GPU: what the memory free after loading the weights would hold
    startup: StartupBreakdown  # how long the start took, phase by phase


@dataclass
class BuiltEngine:
    engine: LLMEngine
    tokenizer: PreTrainedTokenizerBase | None
    info: ModelInfo
    grammars: GrammarCompiler | None  # for constrained requests; None without a tokenizer


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but CUDA is not available")
    return torch.device(name)


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


def build_engine(config: EngineConfig, clock: StartupClock | None = None) -> BuiltEngine:
    """The engine, ready to serve: on CUDA whatever it runs is compiled first (runtime/warmup.py).
    `clock` times the phases (runtime/startup.py); without one they are timed from this call on."""
    clock = clock or StartupClock()
    _use_compile_cache(config.compile_cache_dir)
    source = materialize(resolve_model_source(config.model, config.load_format))
    arch = ModelArchConfig.from_hf(load_hf_config(source))
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, arch, device)
    max_model_len = _context_window(config, arch)
    token_budget = resolve_token_budget(config.max_num_batched_tokens, device)
    placement = Placement(device, dtype)
    tokenizer = load_tokenizer(source.directory)
    kernels = select_kernels(config.kernels, arch, config.block_size, placement)
    model = build_model(arch, source, kernels, placement, max_model_len, config.seed)
    draft = _build_draft_model(config, arch, placement, max_model_len)
    clock.lap("model_load")

    free_memory_tokens = None
    if config.kv_cache_memory is not None:
        budget = config.kv_cache_memory
    elif device.type == "cuda":
        bounds = StepBounds(token_budget, config.max_num_seqs, max_model_len)
        activations = profile_activation_bytes(model, bounds, config.block_size, placement)
        budget, free = gpu_kv_budget(device, config.gpu_memory_utilization, activations)
        free_memory_tokens = free // arch.kv_bytes_per_token(dtype.itemsize)
        log.info(
            "profiled step peak: %.2f GiB of activations; %.2f GiB free after the weights",
            activations / 2**30,
            free / 2**30,
        )
    else:
        budget = CPU_DEFAULT_KV_CACHE_BYTES
    num_blocks = num_kv_blocks([arch] + ([draft.arch] if draft is not None else []), dtype, config.block_size, budget)
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
    runner = ModelRunner(model, Sampler(device, config.seed), kv, memory_limit)
    draft_runner = DraftModelRunner(draft, kv) if draft is not None else None
    clock.lap("kv_cache")
    if device.type == "cuda" and not config.enforce_eager:
        runner.capture_decode_graphs(_decode_graph_batch(config), max_model_len)
        if draft_runner is not None:
            draft_runner.capture_decode_graphs(config.max_num_seqs, max_model_len)
        clock.lap("cuda_graphs")
    log.info(
        "scheduler: a budget of %d tokens per step (%s), at most %d sequences",
        token_budget,
        "as configured" if config.max_num_batched_tokens is not None else f"the default on {device.type}",
        config.max_num_seqs,
    )
    eos = eos_token_ids(tokenizer, arch.eos_token_ids)
    async_scheduling = device.type == "cuda" if config.async_scheduling is None else config.async_scheduling
    grammars = GrammarCompiler(tokenizer, arch.vocab_size, eos) if tokenizer is not None else None

    def new_engine() -> LLMEngine:
        """An engine around the runner, with a scheduler, block pool and counters of its own."""
        scheduler = Scheduler(
            SchedulerConfig(config.max_num_seqs, token_budget),
            BlockManager(num_blocks, config.block_size, config.enable_prefix_caching),
            StopLimits(frozenset(eos), max_model_len),
            Drafter(config.speculative, draft_runner) if config.speculative.enabled else None,
        )
        return LLMEngine(
            runner, scheduler, OutputProcessor(tokenizer), max_model_len, arch.vocab_size, async_scheduling
        )

    # The warm-up runs in an engine of its own, thrown away after it: the served one starts fresh.
    # By default not on a CPU, where nothing compiles (torch's CPU kernels are built ahead of time):
    # there it would only lengthen the start.
    if device.type == "cuda" if config.warmup is None else config.warmup:
        warm_up(new_engine(), runner.sampler.generator, grammars)
        clock.lap("warmup")
    info = ModelInfo(
        served_model_name=config.served_model_name or source.name,
        source=source.describe(),
        architecture=arch.model_type,
        dtype=str(dtype).removeprefix("torch."),
        device=str(device),
        max_model_len=max_model_len,
        vocab_size=arch.vocab_size,
        block_size=config.block_size,
        eos_token_ids=eos,
        has_tokenizer=tokenizer is not None,
        has_chat_template=bool(tokenizer is not None and tokenizer.chat_template),
        kv_cache_tokens=capacity,
        free_memory_tokens=free_memory_tokens,
        startup=clock.breakdown(),
    )
    return BuiltEngine(new_engine(), tokenizer, info, grammars)


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


def _use_compile_cache(directory: str | None) -> None:
    """Points Triton's kernel cache at `directory` (None: Triton's default, ~/.triton/cache). Triton
    reads TRITON_CACHE_DIR when it compiles; this runs before select_kernels first imports it."""
    if directory is None:
        return
    path = Path(directory).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    os.environ["TRITON_CACHE_DIR"] = str(path)
    log.info("compile cache: %s", path)


def freeze_long_lived_objects() -> None:
    """For a process that serves until it exits, called once the engine is built: the model, tokenizer
    and libraries then stay out of Python's full garbage collections, which otherwise walk all of
    them and cost milliseconds per engine step."""
    gc.collect()
    gc.freeze()


def _context_window(config: EngineConfig, arch: ModelArchConfig) -> int:
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
