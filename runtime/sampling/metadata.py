"""One step's sampling parameters as per-row tensors on the device, built from plain values.

The sampler reads only these: no request objects, no host lists in its hot path. A seeded row
carries its own generator (the worker keeps one per request), so its draws do not depend on what
else is in the batch.
"""

from dataclasses import dataclass

import torch

from shoal.runtime.sampling.params import SamplingParams


@dataclass
class Penalties:
    repetition: torch.Tensor  # [rows, 1] float32
    presence: torch.Tensor  # [rows, 1]
    frequency: torch.Tensor  # [rows, 1]
    prompt_token_ids: torch.Tensor  # [rows, width] int64, padded with -1
    output_token_ids: torch.Tensor  # [rows, width] int64, padded with -1


@dataclass
class SamplingMetadata:
    # None when every row is greedy: an all-greedy step (the common case) copies nothing to the device.
    greedy: torch.Tensor | None  # [rows] bool
    temperature: torch.Tensor | None  # [rows] float32; 1.0 on greedy rows
    top_k: torch.Tensor | None  # [rows] int64, 0 where disabled; None: no row draws with top-k or top-p
    top_p: torch.Tensor | None  # [rows] float32
    min_p: torch.Tensor | None  # [rows] float32; None: no row draws with it
    generators: list[torch.Generator | None]  # a seeded row's own generator
    logprobs: list[int | None]  # alternatives to return per row; None: no logprobs
    penalties: Penalties | None  # None: no row has penalties

    @property
    def num_rows(self) -> int:
        return len(self.generators)

    @property
    def all_greedy(self) -> bool:
        return self.greedy is None


def build_sampling_metadata(
    params: list[SamplingParams],
    generators: list[torch.Generator | None],
    device: torch.device,
    history: tuple[list[list[int]], list[list[int]]] | None = None,
) -> SamplingMetadata:
    """`history`: each row's (prompt, output) token ids, needed only when some row has penalties."""
    greedy = temperature = top_k = top_p = min_p = penalties = None
    if not all(p.greedy for p in params):  # the filters matter only to draws
        greedy = to_device([p.greedy for p in params], torch.bool, device)
        temperature = to_device([1.0 if p.greedy else p.temperature for p in params], torch.float32, device)
        if any(p.top_k_enabled or p.top_p < 1.0 for p in params):
            top_k = to_device([p.top_k if p.top_k_enabled else 0 for p in params], torch.int64, device)
            top_p = to_device([p.top_p for p in params], torch.float32, device)
        if any(p.min_p > 0 for p in params):
            min_p = to_device([p.min_p for p in params], torch.float32, device)
    if any(p.needs_penalties for p in params):
        prompts, outputs = history
        penalties = Penalties(
            repetition=to_device([p.repetition_penalty for p in params], torch.float32, device)[:, None],
            presence=to_device([p.presence_penalty for p in params], torch.float32, device)[:, None],
            frequency=to_device([p.frequency_penalty for p in params], torch.float32, device)[:, None],
            prompt_token_ids=_padded(prompts, device),
            output_token_ids=_padded(outputs, device),
        )
    return SamplingMetadata(
        greedy=greedy,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        generators=generators,
        logprobs=[p.logprobs for p in params],
        penalties=penalties,
    )


def to_device(values: list, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A small host list on the device without waiting for the work queued there (a blocking copy
    would stall the host until the device drains, which async scheduling cannot afford)."""
    return torch.tensor(values, dtype=dtype).to(device, non_blocking=True)


def _padded(token_lists: list[list[int]], device: torch.device) -> torch.Tensor:
    width = max((len(t) for t in token_lists), default=0)
    padded = torch.full((len(token_lists), width), -1, dtype=torch.int64)
    for row, tokens in enumerate(token_lists):
        padded[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.int64)
    return padded.to(device, non_blocking=True)
