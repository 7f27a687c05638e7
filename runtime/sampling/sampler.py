"""Turns a batch of logits into one token per row, each row with its own parameters.

Order, as in HF transformers: penalties, then (for non-greedy rows) temperature, top-k, top-p,
min-p, and a draw. Draws use the exponential-race trick (argmax of probs / Exp(1) noise), so a
row with a seed gets its noise from its own generator and samples the same tokens whatever else
is in the batch. Logprobs are of the raw model distribution (vLLM's default), before penalties and
temperature. Everything here is tensors in, tensors out (sampling/metadata.py builds the rows).
"""

from dataclasses import dataclass

import torch

from shoal.runtime.sampling.metadata import Penalties, SamplingMetadata


@dataclass
class SamplerOutput:
    """On the device; nothing here waits for it."""

    token_ids: torch.Tensor  # [rows] int64
    # (chosen token's logprob [rows], top logprobs [rows, k], their token ids [rows, k]), or None
    # when no row asked for logprobs.
    logprobs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None


class Sampler:
    def __init__(self, device: torch.device, seed: int = 0):
        self.device = device
        self.generator = torch.Generator(device=device)  # for rows without a seed of their own
        self.generator.manual_seed(seed)

    def sample(self, logits: torch.Tensor, metadata: SamplingMetadata) -> SamplerOutput:
        """logits: [rows, vocab] float32, one row per metadata row, in order. Does not wait for the
        device."""
        counts = metadata.logprobs
        raw_logprobs = logits.log_softmax(dim=-1) if any(n is not None for n in counts) else None
        if metadata.penalties is not None:
            logits = apply_penalties(logits, metadata.penalties)
        if metadata.all_greedy:
            tokens = logits.argmax(dim=-1)
        else:
            tokens = self._draw(logits, metadata)
        if raw_logprobs is None:
            return SamplerOutput(tokens)
        chosen = raw_logprobs.gather(1, tokens[:, None]).squeeze(1)
        top_values, top_ids = raw_logprobs.topk(max(n or 0 for n in counts), dim=-1)
        return SamplerOutput(tokens, (chosen, top_values, top_ids))

    def _draw(self, logits: torch.Tensor, metadata: SamplingMetadata) -> torch.Tensor:
        scaled = logits / metadata.temperature[:, None]
        if metadata.top_k is not None:
            vocab = logits.shape[-1]
            top_k = torch.where(metadata.top_k > 0, metadata.top_k.clamp(max=vocab), vocab)
            scaled = apply_top_k_top_p(scaled, top_k, metadata.top_p)
        if metadata.min_p is not None:
            scaled = apply_min_p(scaled, metadata.min_p)
        probs = scaled.softmax(dim=-1)
        noise = torch.empty_like(probs).exponential_(generator=self.generator)
        for row, generator in enumerate(metadata.generators):
            if generator is not None:
                noise[row].exponential_(generator=generator)
        sampled = (probs / noise).argmax(dim=-1)
        return torch.where(metadata.greedy, logits.argmax(dim=-1), sampled)


def apply_penalties(logits: torch.Tensor, penalties: Penalties) -> torch.Tensor:
    """Repetition penalty (HF: over prompt and output), then presence/frequency (OpenAI: output only)."""
    vocab = logits.shape[-1]
    output_counts = _token_counts(penalties.output_token_ids, vocab)
    in_prompt = _token_counts(penalties.prompt_token_ids, vocab) > 0
    seen = in_prompt | (output_counts > 0)
    repetition = penalties.repetition
    penalized = torch.where(logits > 0, logits / repetition, logits * repetition)
    logits = torch.where(seen, penalized, logits)
    return logits - penalties.frequency * output_counts - penalties.presence * (output_counts > 0).float()


def _token_counts(token_ids: torch.Tensor, vocab: int) -> torch.Tensor:
    """[rows, vocab] float counts of the padded ids (-1 pads: counted in a spare column, dropped)."""
    ids = torch.where(token_ids < 0, vocab, token_ids)
    counts = torch.zeros(ids.shape[0], vocab + 1, device=ids.device)
    counts.scatter_add_(1, ids, torch.ones(ids.shape, device=ids.device))
    return counts[:, :vocab]


def apply_top_k_top_p(logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Masks to -inf what lies outside each row's top-k and top-p (nucleus) sets."""
    sorted_logits, order = logits.sort(dim=-1, descending=False)
    vocab = logits.shape[-1]
    kth_largest = sorted_logits.gather(1, (vocab - top_k).unsqueeze(1))
    sorted_logits = sorted_logits.masked_fill(sorted_logits < kth_largest, float("-inf"))
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    outside_nucleus = cumulative <= 1 - top_p.unsqueeze(1)
    outside_nucleus[:, -1] = False  # the most likely token always stays
    sorted_logits = sorted_logits.masked_fill(outside_nucleus, float("-inf"))
    return torch.empty_like(logits).scatter_(1, order, sorted_logits)


def apply_min_p(logits: torch.Tensor, min_p: torch.Tensor) -> torch.Tensor:
    """Drops tokens less likely than min_p times the most likely one."""
    probs = logits.softmax(dim=-1)
    threshold = probs.max(dim=-1, keepdim=True).values * min_p.unsqueeze(1)
    return logits.masked_fill(probs < threshold, float("-inf"))
