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


class SampledBatch:
    """One step's draws. They stay on the device, copied to the host in the background, until
    `to_host` reads them: the engine can launch the next step first (async scheduling)."""

    def __init__(self, token_ids: torch.Tensor, logprob_counts: list[int | None], logprobs: tuple[torch.Tensor, ...] = ()):
        self.token_ids = token_ids
        self.logprob_counts = logprob_counts
        self._on_host = [t.to("cpu", non_blocking=True) for t in (token_ids, *logprobs)]
        self._ready = None
        if token_ids.is_cuda:
            self._ready = torch.cuda.Event()
            self._ready.record()

    def to_host(self) -> list[SampledToken]:
        if self._ready is not None:
            self._ready.synchronize()
        token_ids = self._on_host[0].tolist()
        if len(self._on_host) == 1:
            return [SampledToken(t) for t in token_ids]
        chosen, top_values, top_ids = (t.tolist() for t in self._on_host[1:])
        out = []
        for row, n in enumerate(self.logprob_counts):
            if n is None:
                out.append(SampledToken(token_ids[row]))
            else:
                out.append(SampledToken(token_ids[row], chosen[row], list(zip(top_ids[row][:n], top_values[row][:n]))))
        return out


class Sampler:
    def __init__(self, device: torch.device, seed: int = 0):
        self.device = device
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    def sample(self, logits: torch.Tensor, requests: list[Request]) -> SampledBatch:
        """logits: [len(requests), vocab] float32, one row per request, in order. Does not wait for
        the device."""
        params = [r.sampling for r in requests]
        counts = [p.logprobs for p in params]
        raw_logprobs = logits.log_softmax(dim=-1) if any(n is not None for n in counts) else None
        if any(p.needs_penalties for p in params):
            logits = apply_penalties(logits, requests)
        if all(p.greedy for p in params):
            tokens = logits.argmax(dim=-1)
        else:
            tokens = self._draw(logits, requests)
        if raw_logprobs is None:
            return SampledBatch(tokens, counts)
        chosen = raw_logprobs.gather(1, tokens[:, None]).squeeze(1)
        top_values, top_ids = raw_logprobs.topk(max(n or 0 for n in counts), dim=-1)
        return SampledBatch(tokens, counts, (chosen, top_values, top_ids))

    def _draw(self, logits: torch.Tensor, requests: list[Request]) -> torch.Tensor:
        params = [r.sampling for r in requests]
        device = logits.device
        greedy = to_device([p.greedy for p in params], torch.bool, device)
        temperature = to_device([1.0 if p.greedy else p.temperature for p in params], torch.float32, device)
        scaled = logits / temperature[:, None]
        if any(p.top_k_enabled or p.top_p < 1.0 for p in params):
            vocab = logits.shape[-1]
            top_k = to_device([min(p.top_k, vocab) if p.top_k_enabled else vocab for p in params], torch.int64, device)
            top_p = to_device([p.top_p for p in params], torch.float32, device)
            scaled = apply_top_k_top_p(scaled, top_k, top_p)
        if any(p.min_p > 0 for p in params):
            scaled = apply_min_p(scaled, to_device([p.min_p for p in params], torch.float32, device))
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


def to_device(values: list, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A small host list on the device without waiting for the work queued there (a blocking copy
    would stall the host until the device drains, which async scheduling cannot afford)."""
    return torch.tensor(values, dtype=dtype).to(device, non_blocking=True)


def apply_penalties(logits: torch.Tensor, requests: list[Request]) -> torch.Tensor:
    """Repetition penalty (HF: over prompt and output), then presence/frequency (OpenAI: output only)."""
    batch, vocab = logits.shape
    device = logits.device
    output_counts = _token_counts([r.output_token_ids for r in requests], vocab, device)
    in_prompt = _token_counts([r.prompt_token_ids for r in requests], vocab, device) > 0
    repetition = to_device([r.sampling.repetition_penalty for r in requests], torch.float32, device)[:, None]
    presence = to_device([r.sampling.presence_penalty for r in requests], torch.float32, device)[:, None]
    frequency = to_device([r.sampling.frequency_penalty for r in requests], torch.float32, device)[:, None]
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
    counts.scatter_add_(1, padded.to(device, non_blocking=True), torch.ones(padded.shape, device=device))
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
