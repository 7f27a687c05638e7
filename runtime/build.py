"""Assembles an engine from an EngineConfig: model, tokenizer, KV pool, worker, scheduler."""

import gc
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from shoal.runtime.config import EngineConfig
from shoal.runtime.engine.block_manager import BlockManager
from shoal.runtime.engine.drafter import Drafter
from shoal.runtime.engine.llm_engine import LLMEngine, StepOverlap
from shoal.runtime.engine.output_processor import OutputProcessor
from shoal.runtime.engine.scheduler import Scheduler, SchedulerConfig
from shoal.runtime.engine.stop_conditions import StopLimits
from shoal.runtime.model.loader import materialize, resolve_model_source
from shoal.runtime.rank_build import SINGLE_RANK, build_rank, check_parallel_fit
from shoal.runtime.ranks.groups import leave
from shoal.runtime.ranks.rank_zero_runner import RankZeroRunner
from shoal.runtime.ranks.workers import WorkerGroup, start_workers
from shoal.runtime.startup import StartupBreakdown, StartupClock
from shoal.runtime.structured.compiler import GrammarCompiler
from shoal.runtime.tokenization.tokenizer import eos_token_ids, load_tokenizer
from shoal.runtime.warmup import warm_up

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
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1


@dataclass
class BuiltEngine:
    engine: LLMEngine
    tokenizer: PreTrainedTokenizerBase | None
    info: ModelInfo
    grammars: GrammarCompiler | None  # for constrained requests; None without a tokenizer
    parallel: "ParallelRanks | None" = None  # the other ranks, under tensor or pipeline parallelism

    def close(self) -> None:
        """Stops the other ranks, once the engine has stopped stepping (a no-op on one rank)."""
        if self.parallel is not None:
            self.parallel.stop()


@dataclass
class ParallelRanks:
    """Rank 0's hold on the other ranks: to tell them to stop, and to hear when one is lost."""

    runner: RankZeroRunner
    workers: WorkerGroup

    def on_lost(self, listener: Callable[[str], None]) -> None:
        self.workers.on_exit(listener)

    def stop(self) -> None:
        self.runner.stop_workers()
        self.workers.stop()
        leave()

    def kill(self) -> None:
        """After a rank was lost: the others may be stuck in a collective and hear nothing."""
        self.workers.kill()


def build_engine(config: EngineConfig, clock: StartupClock | None = None) -> BuiltEngine:
    """The engine, ready to serve: on CUDA whatever it runs is compiled first (runtime/warmup.py).
    `clock` times the phases (runtime/startup.py); without one they are timed from this call on.
    With several ranks (tensor or pipeline parallelism) this process is rank 0: the others are
    started here, and stopped by `BuiltEngine.close`."""
    clock = clock or StartupClock()
    _use_compile_cache(config.compile_cache_dir)
    source = materialize(resolve_model_source(config.model, config.load_format))
    parallel = None
    if config.world_size > 1:
        check_parallel_fit(config, source)
        parallel = start_workers(config, logging.getLogger().getEffectiveLevel())
    try:
        if parallel is None:
            rank = build_rank(config, source, SINGLE_RANK, None, clock)
        else:
            rank = build_rank(config, source, parallel.groups.tp, parallel.groups.pipeline, clock)
    except BaseException:
        if parallel is not None:
            parallel.workers.kill()
            leave()
        raise
    runner = rank.runner if parallel is None else RankZeroRunner(rank.runner, parallel.channel, parallel.groups.tp)
    tokenizer = load_tokenizer(source.directory)
    arch, device, max_model_len = rank.arch, rank.device, rank.max_model_len
    log.info(
        "scheduler: a budget of %d tokens per step (%s), at most %d sequences",
        rank.token_budget,
        "as configured" if config.max_num_batched_tokens is not None else f"the default on {device.type}",
        config.max_num_seqs,
    )
    eos = eos_token_ids(tokenizer, arch.eos_token_ids)
    async_scheduling = device.type == "cuda" if config.async_scheduling is None else config.async_scheduling
    # A pipeline's stages overlap only with steps in flight: on by default there, on a CPU too.
    if config.pipeline_parallel_size > 1 and config.async_scheduling is None:
        async_scheduling = True
    overlap = StepOverlap(async_scheduling, config.pipeline_parallel_size)
    grammars = GrammarCompiler(tokenizer, arch.vocab_size, eos) if tokenizer is not None else None

    def new_engine() -> LLMEngine:
        """An engine around the runner, with a scheduler, block pool and counters of its own."""
        scheduler = Scheduler(
            SchedulerConfig(config.max_num_seqs, rank.token_budget),
            BlockManager(rank.num_blocks, config.block_size, config.enable_prefix_caching),
            StopLimits(frozenset(eos), max_model_len),
            Drafter(config.speculative, rank.draft_runner) if config.speculative.enabled else None,
        )
        return LLMEngine(runner, scheduler, OutputProcessor(tokenizer), max_model_len, arch.vocab_size, overlap)

    # The warm-up runs in an engine of its own, thrown away after it: the served one starts fresh.
    # By default not on a CPU, where nothing compiles (torch's CPU kernels are built ahead of time):
    # there it would only lengthen the start.
    if device.type == "cuda" if config.warmup is None else config.warmup:
        warm_up(new_engine(), rank.runner.sampler.generator, grammars)
        clock.lap("warmup")
    info = ModelInfo(
        served_model_name=config.served_model_name or source.name,
        source=source.describe(),
        architecture=arch.model_type,
        dtype=str(rank.dtype).removeprefix("torch."),
        device=str(device),
        max_model_len=max_model_len,
        vocab_size=arch.vocab_size,
        block_size=config.block_size,
        eos_token_ids=eos,
        has_tokenizer=tokenizer is not None,
        has_chat_template=bool(tokenizer is not None and tokenizer.chat_template),
        kv_cache_tokens=rank.num_blocks * config.block_size,
        free_memory_tokens=rank.free_memory_tokens,
        startup=clock.breakdown(),
        tensor_parallel_size=config.tensor_parallel_size,
        pipeline_parallel_size=config.pipeline_parallel_size,
    )
    if parallel is None:
        return BuiltEngine(new_engine(), tokenizer, info, grammars)
    parallel.workers.started()
    return BuiltEngine(new_engine(), tokenizer, info, grammars, ParallelRanks(runner, parallel.workers))


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
