"""The runtime's settings, typed and checked once; the CLI and tests build them."""

from dataclasses import dataclass

from shoal.constants import RUNTIME_GRPC_PORT, RUNTIME_METRICS_PORT
from shoal.runtime.engine.lifecycle import INITIAL_WEIGHTS_VERSION
from shoal.runtime.speculative.config import DRAFT_MODEL, SpeculativeConfig
from shoal.runtime.tools.family import AUTO_PARSER
from shoal.runtime.tools.family import PARSERS as TOOL_CALL_PARSERS

DTYPES = ("auto", "float32", "bfloat16", "float16")
LOAD_FORMATS = ("auto", "gguf", "safetensors", "dummy")
KERNELS = ("auto", "torch", "triton")
DEVICES = ("auto", "cpu", "cuda")

# The token budget per step when none is given (build.py picks by device). Every running request
# waits for the whole step, and a step's time grows with its tokens. A GPU runs 8192 tokens in well
# under a second; a small CPU does not: SmolLM2-135M on 2 cores took about 34 s for a 4,000-token
# prompt in one step (issue 13). Measured there, the same prompt next to 2 decodes, in chunks of 256:
# 0.4 s a step at the prompt's start to 0.85 s at its end, 10.8 s in all; in chunks of 512: 0.8 s to
# 1.6 s (2.3 s at worst), 11.8 s in all; 128 halves the step again but costs about 20% in all on a
# 2,048-token prompt. So 256: decodes and newly arrived realtime requests get a step about every
# second, and the long prompt is done no later than in bigger chunks.
GPU_MAX_NUM_BATCHED_TOKENS = 8192
CPU_MAX_NUM_BATCHED_TOKENS = 256


@dataclass(frozen=True)
class EngineConfig:
    """What shapes the engine: the model, the KV pool and the scheduler."""

    model: str = "default"
    load_format: str = "auto"
    served_model_name: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    max_model_len: int | None = None
    block_size: int = 16
    kv_cache_memory: int | None = None  # bytes; default: a fraction of GPU memory, or 1 GiB on CPU
    gpu_memory_utilization: float = 0.9
    enable_prefix_caching: bool = True
    max_num_seqs: int = 256
    max_num_batched_tokens: int | None = None  # None: GPU_ or CPU_MAX_NUM_BATCHED_TOKENS, by device
    seed: int = 0
    kernels: str = "auto"  # auto: Triton on CUDA, torch elsewhere
    enforce_eager: bool = False  # no CUDA graphs
    compile_cache_dir: str | None = None  # Triton's kernel cache (TRITON_CACHE_DIR); None: Triton's default
    warmup: bool | None = None  # synthetic requests before serving (runtime/warmup.py); None: on CUDA only
    async_scheduling: bool | None = None  # overlap step N+1's scheduling with step N's; None: on CUDA only
    speculative: SpeculativeConfig = SpeculativeConfig()  # off by default (runtime/speculative/)
    tensor_parallel_size: int = 1  # ranks, one process (and GPU) each, that split every layer
    pipeline_parallel_size: int = 1  # stages of consecutive layers
    # For testing only (runtime/worker/fault_injection.py): steps of more tokens run out of memory.
    fault_oom_above_tokens: int | None = None

    @property
    def world_size(self) -> int:
        """Processes (GPUs) one runtime takes."""
        return self.tensor_parallel_size * self.pipeline_parallel_size

    def __post_init__(self) -> None:
        _choice("load_format", self.load_format, LOAD_FORMATS)
        _choice("kernels", self.kernels, KERNELS)
        _choice("dtype", self.dtype, DTYPES)
        _choice("device", self.device, DEVICES)
        _at_least("block_size", self.block_size, 1)
        _at_least("max_num_seqs", self.max_num_seqs, 1)
        if self.max_num_batched_tokens is not None:
            _at_least("max_num_batched_tokens", self.max_num_batched_tokens, 1)
        if self.max_model_len is not None:
            _at_least("max_model_len", self.max_model_len, 2)
        if self.kv_cache_memory is not None:
            _at_least("kv_cache_memory", self.kv_cache_memory, 1)
        if self.fault_oom_above_tokens is not None:
            _at_least("fault_oom_above_tokens", self.fault_oom_above_tokens, 0)
        _at_least("tensor_parallel_size", self.tensor_parallel_size, 1)
        _at_least("pipeline_parallel_size", self.pipeline_parallel_size, 1)
        if self.world_size > 1:
            if self.speculative.method == DRAFT_MODEL:
                raise ValueError("a draft model runs on one GPU: not with tensor or pipeline parallelism")
            if self.fault_oom_above_tokens is not None:
                raise ValueError("fault_oom_above_tokens fails a step on rank 0 alone: not with several ranks")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")


@dataclass(frozen=True)
class ServerConfig:
    """Where the runtime listens and how it labels itself."""

    host: str = "0.0.0.0"
    port: int = RUNTIME_GRPC_PORT
    metrics_port: int = RUNTIME_METRICS_PORT
    max_waiting: int = 1024
    max_n: int = 16  # choices one request may ask for (GenerateRequest.n)
    tool_call_parser: str = AUTO_PARSER  # the syntax the model writes function calls in (runtime/tools/family.py)
    admin_token_file: str | None = None  # the RuntimeAdmin service's token; None: the service refuses every call
    pause_wait_s: float = 60.0  # how long a new request waits out a pause; 0: UNAVAILABLE at once, with retry-after
    weights_version: str = INITIAL_WEIGHTS_VERSION  # what the weights at start are called
    pool: str = ""
    revision: str = ""
    shutdown_grace_s: float = 30.0
    # For testing only (runtime/server/fault_injection.py): a deliberately slow or failing runtime.
    fault_latency_s: float = 0.0
    fault_error_rate: float = 0.0
    fault_metrics_unavailable: bool = False

    def __post_init__(self) -> None:
        for name in ("port", "metrics_port"):
            value = getattr(self, name)
            if not 0 <= value <= 65535:
                raise ValueError(f"{name} must be in [0, 65535], got {value}")
        _at_least("max_waiting", self.max_waiting, 0)
        _at_least("max_n", self.max_n, 1)
        _choice("tool_call_parser", self.tool_call_parser, TOOL_CALL_PARSERS)
        if self.pause_wait_s < 0:
            raise ValueError(f"pause_wait_s must be >= 0, got {self.pause_wait_s}")
        if not self.weights_version:
            raise ValueError("weights_version must not be empty")
        if self.shutdown_grace_s < 0:
            raise ValueError(f"shutdown_grace_s must be >= 0, got {self.shutdown_grace_s}")
        if self.fault_latency_s < 0:
            raise ValueError(f"fault_latency_s must be >= 0, got {self.fault_latency_s}")
        if not 0 <= self.fault_error_rate <= 1:
            raise ValueError(f"fault_error_rate must be in [0, 1], got {self.fault_error_rate}")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
