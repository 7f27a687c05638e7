"""Turns a batch of logits into one token per row, each row with its own parameters.

Order, as in HF transformers: penalties, then (for non-greedy rows) temperature, top-k, top-p,
min-p, and a draw. Draws use the exponential-race trick (argmax of probs / Exp(1) noise), so a
row with a seed gets its noise from its own generator and samples the same tokens whatever else
is in the batch. Logprobs are of the raw model distribution (vLLM's default), before penalties and
temperature. Everything here is tensors in, tensors out (sampling/metadata.py builds the rows).

Speculative decoding: a row may carry a draft token to verify against its distribution p. The
draft (a point proposal, q = 1 on it) is accepted with probability p(draft); a greedy row accepts
it when it is the argmax. A rejected draft is replaced by a draw from p with the draft removed
(max(0, p - q) normalised), so what is emitted follows p exactly, as if nothing had been drafted.
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
    # With drafts: whether each row accepted its draft (then token_ids holds the draft); None without.
    accepted: torch.Tensor | None = None


class Sampler:
    def __init__(self, device: torch.device, seed: int = 0):
        self.device = device
        self.generator = torch.Generator(device=device)  # for rows without a seed of their own
        self.generator.manual_seed(seed)

    def sample(
        self, logits: torch.Tensor, metadata: SamplingMetadata, drafts: torch.Tensor | None = None
    ) -> SamplerOutput:
        """logits: [rows, vocab] float32, one row per metadata row, in order; drafts: [rows] int64, the
        draft each row verifies (-1: none), or None. Does not wait for the device."""
        counts = metadata.logprobs
        raw_logprobs = logits.log_softmax(dim=-1) if any(n is not None for n in counts) else None
        if metadata.penalties is not None:
            logits = apply_penalties(logits, metadata.penalties)
        accepted = None
        if drafts is not None:
            tokens, accepted = self._verify(logits, metadata, drafts)
        elif metadata.all_greedy:
            tokens = logits.argmax(dim=-1)
        else:
            tokens = _draw(self._probs(logits, metadata), self._noise(logits, metadata))
            tokens = torch.where(metadata.greedy, logits.argmax(dim=-1), tokens)
        if raw_logprobs is None:
            return SamplerOutput(tokens, accepted=accepted)
        chosen = raw_logprobs.gather(1, tokens[:, None]).squeeze(1)
        top_values, top_ids = raw_logprobs.topk(max(n or 0 for n in counts), dim=-1)
        return SamplerOutput(tokens, (chosen, top_values, top_ids), accepted)

    def _verify(
        self, logits: torch.Tensor, metadata: SamplingMetadata, drafts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the token each row emits: its draft if accepted, else a draw; whether it accepted)."""
        has_draft = drafts >= 0
        draft = drafts.clamp(min=0)
        target = logits.argmax(dim=-1)
        accepted = has_draft & (target == draft)
        if not metadata.all_greedy:
            probs = self._probs(logits, metadata)
            noise = self._noise(logits, metadata)
            chance = self._uniform(metadata, logits.device)
            drawn_accept = has_draft & (chance < probs.gather(1, draft[:, None]).squeeze(1))
            residual = torch.where(has_draft[:, None], probs.scatter(1, draft[:, None], 0.0), probs)
            accepted = torch.where(metadata.greedy, accepted, drawn_accept)
            target = torch.where(metadata.greedy, target, _draw(residual, noise))
        return torch.where(accepted, draft, target), accepted

    def _probs(self, logits: torch.Tensor, metadata: SamplingMetadata) -> torch.Tensor:
        scaled = logits / metadata.temperature[:, None]
        if metadata.top_k is not None:
            vocab = logits.shape[-1]
            top_k = torch.where(metadata.top_k > 0, metadata.top_k.clamp(max=vocab), vocab)
            scaled = apply_top_k_top_p(scaled, top_k, metadata.top_p)
        if metadata.min_p is not None:
            scaled = apply_min_p(scaled, metadata.min_p)
        return scaled.softmax(dim=-1)

    def _noise(self, logits: torch.Tensor, metadata: SamplingMetadata) -> torch.Tensor:
        noise = torch.empty_like(logits).exponential_(generator=self.generator)
        for row, generator in enumerate(metadata.generators):
            if generator is not None:
                noise[row].exponential_(generator=generator)
        return noise

    def _uniform(self, metadata: SamplingMetadata, device: torch.device) -> torch.Tensor:
        chance = torch.rand(metadata.num_rows, device=device, generator=self.generator)
        for row, generator in enumerate(metadata.generators):
            if generator is not None:
                chance[row] = torch.rand(1, device=device, generator=generator)[0]
        return chance


def _draw(probs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The exponential race: argmax of probs / Exp(1) noise is a draw from probs."""
    return (probs / noise).argmax(dim=-1)


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
