"""Turns a batch of logits into one token per request, each row with its own parameters.

Order, as in HF transformers: penalties, then (for non-greedy rows) temperature, top-k, top-p,
min-p, and a draw. Draws use the exponential-race trick (argmax of probs / Exp(1) noise), so a
request with a seed gets its noise from its own generator and samples the same tokens whatever else
is in the batch. Logprobs are of the raw model distribution (vLLM's default), before penalties and
temperature.
"""

from dataclasses import dataclass

import torch

from shoal.runtime.engine.request import Request


@dataclass
class SampledToken:
    token_id: int
    logprob: float | None = None
    top_logprobs: list[tuple[int, float]] | None = None


class Sampler:
    def __init__(self, device: torch.device, seed: int = 0):
        self.device = device
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    def sample(self, logits: torch.Tensor, requests: list[Request]) -> list[SampledToken]:
        """logits: [len(requests), vocab] float32, one row per request, in order."""
        params = [r.sampling for r in requests]
        wants_logprobs = [p.logprobs is not None for p in params]
        raw_logprobs = logits.log_softmax(dim=-1) if any(wants_logprobs) else None
        if any(p.needs_penalties for p in params):
            logits = apply_penalties(logits, requests)
        if all(p.greedy for p in params):
            tokens = logits.argmax(dim=-1)
        else:
            tokens = self._draw(logits, requests)
        token_ids = tokens.tolist()
        if raw_logprobs is None:
            return [SampledToken(t) for t in token_ids]
        return self._with_logprobs(raw_logprobs, tokens, token_ids, requests)

    def _draw(self, logits: torch.Tensor, requests: list[Request]) -> torch.Tensor:
        params = [r.sampling for r in requests]
        greedy = torch.tensor([p.greedy for p in params], device=logits.device)
        temperature = torch.tensor([1.0 if p.greedy else p.temperature for p in params], device=logits.device)
        scaled = logits / temperature[:, None]
        if any(p.top_k_enabled or p.top_p < 1.0 for p in params):
            vocab = logits.shape[-1]
            top_k = torch.tensor([min(p.top_k, vocab) if p.top_k_enabled else vocab for p in params], device=logits.device)
            top_p = torch.tensor([p.top_p for p in params], device=logits.device)
            scaled = apply_top_k_top_p(scaled, top_k, top_p)
        if any(p.min_p > 0 for p in params):
            scaled = apply_min_p(scaled, torch.tensor([p.min_p for p in params], device=logits.device))
        probs = scaled.softmax(dim=-1)
        noise = torch.empty_like(probs).exponential_(generator=self.generator)
        for row, request in enumerate(requests):
            if request.sampling.seed is not None:
                noise[row].exponential_(generator=self._request_generator(request))
        sampled = (probs / noise).argmax(dim=-1)
        return torch.where(greedy, logits.argmax(dim=-1), sampled)

    def _request_generator(self, request: Request) -> torch.Generator:
        if request.generator is None:
            request.generator = torch.Generator(device=self.device)
            request.generator.manual_seed(request.sampling.seed)
        return request.generator

    @staticmethod
    def _with_logprobs(
        raw_logprobs: torch.Tensor, tokens: torch.Tensor, token_ids: list[int], requests: list[Request]
    ) -> list[SampledToken]:
        chosen = raw_logprobs.gather(1, tokens[:, None]).squeeze(1).tolist()
        max_top = max(r.sampling.logprobs or 0 for r in requests)
        top_values = top_ids = None
        if max_top:
            values, ids = raw_logprobs.topk(max_top, dim=-1)
            top_values, top_ids = values.tolist(), ids.tolist()
        out = []
        for row, request in enumerate(requests):
            n = request.sampling.logprobs
            if n is None:
                out.append(SampledToken(token_ids[row]))
                continue
            top = list(zip(top_ids[row][:n], top_values[row][:n])) if n else []
            out.append(SampledToken(token_ids[row], chosen[row], top))
        return out


def apply_penalties(logits: torch.Tensor, requests: list[Request]) -> torch.Tensor:
    """Repetition penalty (HF: over prompt and output), then presence/frequency (OpenAI: output only)."""
    batch, vocab = logits.shape
    device = logits.device
    output_counts = _token_counts([r.output_token_ids for r in requests], vocab, device)
    in_prompt = _token_counts([r.prompt_token_ids for r in requests], vocab, device) > 0
    repetition = torch.tensor([r.sampling.repetition_penalty for r in requests], device=device)[:, None]
    presence = torch.tensor([r.sampling.presence_penalty for r in requests], device=device)[:, None]
    frequency = torch.tensor([r.sampling.frequency_penalty for r in requests], device=device)[:, None]
    seen = in_prompt | (output_counts > 0)
    penalized = torch.where(logits > 0, logits / repetition, logits * repetition)
    logits = torch.where(seen, penalized, logits)
    return logits - frequency * output_counts - presence * (output_counts > 0).float()


def _token_counts(token_lists: list[list[int]], vocab: int, device: torch.device) -> torch.Tensor:
    """[len(token_lists), vocab] float counts; padding goes to a spare column that is dropped."""
    width = max((len(t) for t in token_lists), default=0)
    padded = torch.full((len(token_lists), width), vocab, dtype=torch.int64)
    for row, tokens in enumerate(token_lists):
        padded[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.int64)
    counts = torch.zeros(len(token_lists), vocab + 1, device=device)
    counts.scatter_add_(1, padded.to(device), torch.ones(padded.shape, device=device))
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
