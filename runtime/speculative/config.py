"""How the runtime speculates (vLLM's knobs, under its names where it has them)."""

from dataclasses import dataclass

NGRAM = "ngram"
DRAFT_MODEL = "draft_model"
METHODS = ("none", NGRAM, DRAFT_MODEL)


@dataclass(frozen=True)
class SpeculativeConfig:
    # ngram: prompt lookup, drafts copied from earlier in the prompt and output; draft_model: a
    # smaller model with the same vocabulary proposes them (greedily), over a paged KV cache of its own.
    method: str = "none"
    num_speculative_tokens: int = 4  # k: drafts per sequence per step
    model: str | None = None  # draft_model: as --model takes it (a directory, a .gguf file, or "default")
    prompt_lookup_min: int = 1  # the shortest suffix n-gram searched for
    prompt_lookup_max: int = 3  # the longest, tried first
    # Above this many running requests no request speculates: the batch already keeps the device busy,
    # and verifying drafts that fail then costs more than it saves. None: no limit.
    disable_batch_size: int | None = None
    # A request whose recent acceptance falls below this stops drafting for a while (backoff), then tries again.
    min_acceptance: float = 0.2

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"speculative method must be one of {METHODS}, got {self.method!r}")
        if (self.method == DRAFT_MODEL) != (self.model is not None):
            raise ValueError("a draft model (model) is given with method draft_model, and only with it")
        if self.num_speculative_tokens < 1:
            raise ValueError(f"num_speculative_tokens must be >= 1, got {self.num_speculative_tokens}")
        if not 1 <= self.prompt_lookup_min <= self.prompt_lookup_max:
            raise ValueError("need 1 <= prompt_lookup_min <= prompt_lookup_max")
        if self.disable_batch_size is not None and self.disable_batch_size < 1:
            raise ValueError(f"disable_batch_size must be >= 1, got {self.disable_batch_size}")
        if not 0 <= self.min_acceptance <= 1:
            raise ValueError(f"min_acceptance must be in [0, 1], got {self.min_acceptance}")

    @property
    def enabled(self) -> bool:
        return self.method != "none"
