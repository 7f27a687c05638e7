"""`shoal runtime` flags, named as vLLM's `vllm serve` names them where the two overlap."""

import argparse
import asyncio
import dataclasses
import faulthandler
import json
import logging
import os
import re
import signal

from shoal.runtime.config import (
    CPU_MAX_NUM_BATCHED_TOKENS,
    DEVICES,
    DTYPES,
    GPU_MAX_NUM_BATCHED_TOKENS,
    KERNELS,
    LOAD_FORMATS,
    TOOL_CALL_PARSERS,
    EngineConfig,
    ServerConfig,
)
from shoal.runtime.speculative.config import SpeculativeConfig

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B?\s*$", re.IGNORECASE)


def speculative_config(text: str) -> SpeculativeConfig:
    """--speculative-config's JSON; a bad key or value is argparse's error, naming it."""
    try:
        values = json.loads(text)
        if not isinstance(values, dict):
            raise ValueError("expected a JSON object")
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(SpeculativeConfig)})
        if unknown:
            raise ValueError(f"unknown keys {unknown}")
        return SpeculativeConfig(**values)
    except (ValueError, TypeError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_size(text: str) -> int:
    """Bytes from '4GiB', '512MiB', '2G', '1000000'."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 4GiB, 512MiB, 1000000)")
    number, prefix, binary = float(match[1]), match[2].upper(), match[3]
    return int(number * (1024 if binary else 1000) ** "_KMGT".index(prefix or "_"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every default is the config dataclass's own (runtime/config.py)."""
    engine, server_config = EngineConfig(), ServerConfig()
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        default=engine.model,
        help="'default' (the embedded SmolLM2-135M-Instruct), a .gguf file, or an HF model directory",
    )
    model.add_argument(
        "--load-format",
        default=engine.load_format,
        choices=LOAD_FORMATS,
        help="'dummy': random weights from the directory's config.json",
    )
    model.add_argument(
        "--served-model-name",
        default=engine.served_model_name,
        help="name reported to clients and in metrics (default: from the model)",
    )
    model.add_argument(
        "--dtype", default=engine.dtype, choices=DTYPES, help="auto: float32 on CPU, bfloat16/float16 on GPU"
    )
    model.add_argument("--device", default=engine.device, choices=DEVICES)
    model.add_argument(
        "--max-model-len",
        type=int,
        default=engine.max_model_len,
        help="context window in tokens (default: the model's)",
    )
    model.add_argument("--seed", type=int, default=engine.seed, help="seed for requests that bring none")
    model.add_argument(
        "--kernels",
        default=engine.kernels,
        choices=KERNELS,
        help="attention and fused layer kernels; auto: Triton on CUDA, torch elsewhere",
    )
    model.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs for decode steps")
    model.add_argument(
        "--compile-cache-dir",
        default=engine.compile_cache_dir,
        metavar="DIR",
        help="where Triton keeps the kernels it compiles (sets TRITON_CACHE_DIR): on a volume that outlives the "
        "pod, a restart loads them instead of compiling them again (default: Triton's own, ~/.triton/cache)",
    )
    model.add_argument(
        "--warmup",
        action=argparse.BooleanOptionalAction,
        default=engine.warmup,
        help="run synthetic requests before serving, so that kernels compile before /ready (default: on with CUDA)",
    )
    model.add_argument(
        "--async-scheduling",
        action=argparse.BooleanOptionalAction,
        default=engine.async_scheduling,
        help="schedule step N+1 while the GPU runs step N (default: on with CUDA, and with pipeline stages)",
    )

    model.add_argument(
        "--speculative-config",
        type=speculative_config,
        default=engine.speculative,
        help='speculative decoding, as vLLM takes it: JSON such as \'{"method": "ngram", '
        '"num_speculative_tokens": 4, "prompt_lookup_max": 3}\' or \'{"method": "draft_model", "model": DIR}\' '
        "(keys: those of runtime/speculative/config.py)",
    )

    parallel = parser.add_argument_group("parallelism (one process per rank; NCCL on GPUs, gloo on a CPU)")
    parallel.add_argument(
        "--tensor-parallel-size",
        "-tp",
        type=int,
        default=engine.tensor_parallel_size,
        help="split every layer's heads, MLP columns and vocabulary over this many GPUs (ranks)",
    )
    parallel.add_argument(
        "--pipeline-parallel-size",
        "-pp",
        type=int,
        default=engine.pipeline_parallel_size,
        help="split the layers into this many stages, one GPU (or tensor-parallel group) each",
    )

    cache = parser.add_argument_group("KV cache")
    cache.add_argument("--block-size", type=int, default=engine.block_size, help="tokens per KV block")
    cache.add_argument(
        "--kv-cache-memory",
        type=parse_size,
        default=engine.kv_cache_memory,
        help="KV pool size, e.g. 4GiB (default: 1GiB on CPU; on GPU see --gpu-memory-utilization)",
    )
    cache.add_argument(
        "--gpu-memory-utilization",
        type=float,
        default=engine.gpu_memory_utilization,
        help="fraction of GPU memory for weights, activations and KV cache",
    )
    cache.add_argument(
        "--enable-prefix-caching",
        action=argparse.BooleanOptionalAction,
        default=engine.enable_prefix_caching,
        help="share KV blocks of common prompt prefixes",
    )

    sched = parser.add_argument_group("scheduler")
    sched.add_argument("--max-num-seqs", type=int, default=engine.max_num_seqs, help="most requests in one batch")
    sched.add_argument(
        "--max-num-batched-tokens",
        type=int,
        default=engine.max_num_batched_tokens,
        help=f"token budget per step (prefill chunks + decodes); default: {GPU_MAX_NUM_BATCHED_TOKENS} on CUDA, "
        f"{CPU_MAX_NUM_BATCHED_TOKENS} on CPU, where a long prompt would otherwise stall every other request",
    )
    sched.add_argument(
        "--max-waiting",
        type=int,
        default=server_config.max_waiting,
        help="queued requests beyond which new ones get RESOURCE_EXHAUSTED",
    )
    sched.add_argument(
        "--max-n", type=int, default=server_config.max_n, help="choices one request may ask for (OpenAI's n)"
    )
    sched.add_argument(
        "--tool-call-parser",
        choices=TOOL_CALL_PARSERS,
        default=server_config.tool_call_parser,
        help="the syntax the model writes function calls in (auto: read from its chat template)",
    )

    lifecycle = parser.add_argument_group("lifecycle (shoal.v1.RuntimeAdmin: pause, resume, weight updates)")
    lifecycle.add_argument(
        "--admin-token-file",
        default=server_config.admin_token_file,
        help="a file holding the token RuntimeAdmin calls must bring; without it the service refuses every call",
    )
    lifecycle.add_argument(
        "--pause-wait",
        type=float,
        default=server_config.pause_wait_s,
        help="seconds a new request waits out a pause before UNAVAILABLE (0: refused at once, with retry-after)",
    )
    lifecycle.add_argument(
        "--weights-version", default=server_config.weights_version, help="what the weights at start are called"
    )

    server = parser.add_argument_group("server")
    server.add_argument("--host", default=server_config.host)
    server.add_argument("--port", type=int, default=server_config.port, help="gRPC port")
    server.add_argument(
        "--metrics-port", type=int, default=server_config.metrics_port, help="HTTP port for /metrics, /health, /ready"
    )
    server.add_argument(
        "--pool", default=os.environ.get("SHOAL_POOL", ""), help="pool label on metrics (env SHOAL_POOL)"
    )
    server.add_argument(
        "--revision",
        default=os.environ.get("SHOAL_REVISION", ""),
        help="revision label on metrics (env SHOAL_REVISION)",
    )
    server.add_argument(
        "--shutdown-grace",
        type=float,
        default=server_config.shutdown_grace_s,
        help="seconds to let requests finish on SIGTERM",
    )
    server.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))

    testing = parser.add_argument_group("fault injection (for testing only)")
    testing.add_argument(
        "--fault-latency-ms",
        type=float,
        default=server_config.fault_latency_s * 1000,
        help="delay every request by this much before it starts",
    )
    testing.add_argument(
        "--fault-oom-above-tokens",
        type=int,
        default=engine.fault_oom_above_tokens,
        help="engine steps of more tokens fail as out of GPU memory",
    )
    testing.add_argument(
        "--fault-error-rate",
        type=float,
        default=server_config.fault_error_rate,
        help="fraction of requests refused with INTERNAL",
    )
    testing.add_argument(
        "--fault-metrics-unavailable",
        action="store_true",
        default=server_config.fault_metrics_unavailable,
        help="/metrics answers 503 (probes and requests are served as ever)",
    )


def configs_from_args(args: argparse.Namespace) -> tuple[EngineConfig, ServerConfig]:
    engine = EngineConfig(
        model=args.model,
        load_format=args.load_format,
        served_model_name=args.served_model_name,
        dtype=args.dtype,
        device=args.device,
        max_model_len=args.max_model_len,
        block_size=args.block_size,
        kv_cache_memory=args.kv_cache_memory,
        gpu_memory_utilization=args.gpu_memory_utilization,
        enable_prefix_caching=args.enable_prefix_caching,
        max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens,
        seed=args.seed,
        kernels=args.kernels,
        enforce_eager=args.enforce_eager,
        compile_cache_dir=args.compile_cache_dir,
        warmup=args.warmup,
        async_scheduling=args.async_scheduling,
        speculative=args.speculative_config,
        tensor_parallel_size=args.tensor_parallel_size,
        pipeline_parallel_size=args.pipeline_parallel_size,
        fault_oom_above_tokens=args.fault_oom_above_tokens,
    )
    server = ServerConfig(
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
        max_waiting=args.max_waiting,
        max_n=args.max_n,
        tool_call_parser=args.tool_call_parser,
        admin_token_file=args.admin_token_file,
        pause_wait_s=args.pause_wait,
        weights_version=args.weights_version,
        pool=args.pool,
        revision=args.revision,
        shutdown_grace_s=args.shutdown_grace,
        fault_latency_s=args.fault_latency_ms / 1000,
        fault_error_rate=args.fault_error_rate,
        fault_metrics_unavailable=args.fault_metrics_unavailable,
    )
    return engine, server


def run(args: argparse.Namespace) -> int:
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1`: every thread's stack, to the log
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from shoal.runtime.serve import serve

    try:
        asyncio.run(serve(*configs_from_args(args)))
    except (ValueError, FileNotFoundError) as error:  # bad flags or model: a message, not a traceback
        raise SystemExit(f"shoal runtime: {error}") from None
    return 0
