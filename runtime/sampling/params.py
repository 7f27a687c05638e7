"""Per-request sampling parameters, validated once when the request arrives."""

import math
from dataclasses import dataclass
from functools import cached_property

from shoal.runtime.errors import InvalidRequestError
from shoal.runtime.structured.spec import StructuredOutput

# OpenAI allows up to 20 alternatives per token; vLLM's default cap is the same.
MAX_LOGPROBS = 20
# Below this temperature sampling is greedy (vLLM's _SAMPLING_EPS).
GREEDY_EPSILON = 1e-5


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1  # <= 0 disables
    min_p: float = 0.0
    seed: int | None = None
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    max_tokens: int | None = None  # None: up to the context window
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    logprobs: int | None = None  # None: no logprobs; N: the chosen token's and N alternatives
    skip_special_tokens: bool = True
    structured: StructuredOutput | None = None  # what the output must follow (runtime/structured/)
    speculative: bool = True  # False: this request never drafts, even where the runtime speculates

    def __post_init__(self) -> None:
        # Infinities pass the range checks below but turn logits into NaN or uniform noise: refused.
        _check(
            math.isfinite(self.temperature) and self.temperature >= 0,
            "temperature",
            f"must be finite and >= 0, got {self.temperature}",
        )
        _check(0 < self.top_p <= 1, "top_p", f"must be in (0, 1], got {self.top_p}")
        _check(self.top_k >= -1, "top_k", f"must be -1 or 0 (disabled) or >= 1, got {self.top_k}")
        _check(0 <= self.min_p <= 1, "min_p", f"must be in [0, 1], got {self.min_p}")
        _check(
            math.isfinite(self.repetition_penalty) and self.repetition_penalty > 0,
            "repetition_penalty",
            f"must be finite and > 0, got {self.repetition_penalty}",
        )
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            _check(-2 <= value <= 2, name, f"must be in [-2, 2], got {value}")
        if self.max_tokens is not None:
            _check(self.max_tokens >= 1, "max_tokens", f"must be >= 1, got {self.max_tokens}")
        _check(all(self.stop), "stop", "stop strings must not be empty")
        _check(all(t >= 0 for t in self.stop_token_ids), "stop_token_ids", "token ids must be >= 0")
        if self.logprobs is not None:
            _check(
                0 <= self.logprobs <= MAX_LOGPROBS, "logprobs", f"must be in [0, {MAX_LOGPROBS}], got {self.logprobs}"
            )

    # Cached: the scheduler, the worker and the sampler each ask for every row of every step.
    @cached_property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_EPSILON

    @property
    def top_k_enabled(self) -> bool:
        return self.top_k > 0

    @cached_property
    def needs_penalties(self) -> bool:
        return self.repetition_penalty != 1.0 or self.presence_penalty != 0.0 or self.frequency_penalty != 0.0


def _check(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise InvalidRequestError(f"sampling.{field}", message)
