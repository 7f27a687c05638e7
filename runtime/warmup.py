"""Synthetic requests through the engine before it serves, so that nothing compiles in the serving path.

Triton compiles a kernel again for each new specialization it meets: new constexpr values (the
decode kernel's key splits follow the batch), integer arguments equal to 1 or divisible by 16 (the
number of sequences, where the prefill rows begin, the block-table width), pointers aligned to 16
bytes or not (the step's metadata tensors are views at offsets that follow the batch). Each compile
stalls every request in its step: on an H200 the first throughput run after start was half as fast
as the second. PyTorch also loads each CUDA kernel on its first use (the sampler's sort, cumsum and
scatter), and a CUDA graph is uploaded on its first replay.

So the engine is driven through the step shapes the scheduler makes, each wave run to its end:
lone prompts of lengths around block boundaries (one sequence; block tables 1, 16 and 17 blocks
wide; odd and even token counts); a prompt longer than the token budget (chunked prefill) and the
same prompt again (a prefix-cache hit); a burst of equal prompts, 16 arriving a step, as a
throughput benchmark lands; then a ramp of max_num_seqs requests arriving one per step, later
several per step, so that steps mix 0, 1, 2, ... decodes with new prefills (this sweeps the sequence
counts, the decode splits and the alignments) before the batch drains through decode batches of
every size. The requests use every sampling path: greedy, temperature, top-p, top-k, min-p,
logprobs, penalties and, with a tokenizer, a JSON-object grammar (xgrammar's mask kernel).

The kernels allow more variants than a start can afford to compile (each takes most of a second),
so the waves aim at the shapes traffic makes most; a rare one can still compile while serving, once
per compile cache (--compile-cache-dir keeps them across restarts).

The caller gives a throwaway engine around the served engine's runner (runtime/build.py); the
served one is built afterwards, so it starts with no request, every block free, an empty prefix cache
and zeroed counters. The runner keeps nothing that matters: its KV blocks hold stale values that no
block table points to, and the sampler's generator is put back as it was, so requests draw what they
would have drawn without a warm-up. No warm-up request has a seed: the runner would keep its
generator, by request id, until a later step reported the request finished.
"""

import itertools
import logging
import random
import time
from dataclasses import dataclass, replace

import torch

from shoal.runtime.engine.llm_engine import LLMEngine
from shoal.runtime.sampling.params import SamplingParams
from shoal.runtime.structured.compiler import GrammarCompiler
from shoal.runtime.structured.spec import JSON_OBJECT, StructuredOutput

log = logging.getLogger(__name__)

# One request kind per path of the sampler (runtime/sampling/sampler.py).
SAMPLING = {
    "greedy": SamplingParams(temperature=0),
    "temperature": SamplingParams(temperature=0.8),
    "top_p": SamplingParams(temperature=0.8, top_p=0.9),
    "top_k": SamplingParams(temperature=0.8, top_k=20),
    "min_p": SamplingParams(temperature=0.8, min_p=0.05),
    "logprobs": SamplingParams(temperature=0, logprobs=5),
    "penalties": SamplingParams(temperature=0.8, repetition_penalty=1.1, presence_penalty=0.5, frequency_penalty=0.5),
    "json": SamplingParams(temperature=0, structured=StructuredOutput(JSON_OBJECT)),
}
# Penalties read each step's draws before the next step is launched; kept out of the ramp, whose
# steps should overlap as most served steps do (async scheduling).
RAMP_KINDS = ("greedy", "temperature", "top_p", "top_k", "min_p", "logprobs", "json")
LONE_MAX_TOKENS = 3  # the prefill, then decodes of one sequence
# The ramp's arrivals per step: (until this many have arrived, this many a step). Odd counts after
# the first, so that the step's sequence count takes every value modulo 4 (the alignment of the
# sequence-length view in the step's metadata follows it).
RAMP_ARRIVALS = ((32, 1), (64, 3), (128, 5), (None, 7))
# A burst of equal prompts, as a throughput benchmark sends: 16 arrive a step, each a sixteenth of
# the token budget, so steps hold 16 prefills beside 0, 16, 32, 48 decodes (counts divisible by 16).
BURST_PER_STEP = 16
BURST_STEPS = 4


@dataclass(frozen=True)
class EngineLimits:
    """What bounds the shapes of the engine's steps."""

    token_budget: int
    max_num_seqs: int
    max_model_len: int
    kv_capacity: int  # tokens
    block_size: int

    @classmethod
    def of(cls, engine: LLMEngine) -> "EngineLimits":
        config, blocks = engine.scheduler.config, engine.scheduler.block_manager
        return cls(
            config.max_num_batched_tokens,
            config.max_num_seqs,
            engine.max_model_len,
            blocks.num_blocks * blocks.block_size,
            blocks.block_size,
        )

    @property
    def longest_request(self) -> int:
        """Prompt and output tokens one request may hold."""
        return min(self.max_model_len, self.kv_capacity)


@dataclass(frozen=True)
class WarmUpRequest:
    arrival_step: int  # counted from the start of its wave
    prompt_len: int
    prompt_seed: int  # requests with the same seed and length have the same prompt
    sampling: SamplingParams  # max_tokens set


@dataclass(frozen=True)
class WarmUpStats:
    requests: int
    steps: int
    prompt_tokens: int
    output_tokens: int
    seconds: float


def plan(limits: EngineLimits, with_grammar: bool) -> list[list[WarmUpRequest]]:
    """The waves of requests, each run to its end before the next begins."""
    kinds = [k for k in SAMPLING if with_grammar or k != "json"]
    seeds = itertools.count()
    longest, bs = limits.longest_request, limits.block_size
    lengths = sorted(
        {_fit(n, LONE_MAX_TOKENS, longest)[0] for n in (1, 2, 3, 16 * bs - 1, 16 * bs, 16 * bs + 1, 100, 101)}
    )
    waves = [
        [_request(0, n, next(seeds), SAMPLING[kind], LONE_MAX_TOKENS, longest)]
        for n, kind in zip(lengths, itertools.cycle(kinds))
    ]
    if limits.token_budget < longest - LONE_MAX_TOKENS - 1:
        chunked = _request(
            0, limits.token_budget * 3 // 2 + 1, next(seeds), SAMPLING["greedy"], LONE_MAX_TOKENS, longest
        )
        waves += [[chunked], [chunked]]  # the second finds the first's blocks in the prefix cache
    ramp_kinds = [k for k in RAMP_KINDS if k in kinds]
    waves.append(_burst(limits, ramp_kinds, seeds))
    waves.append(_ramp(limits, ramp_kinds, seeds))
    return waves


def _burst(limits: EngineLimits, kinds: list[str], seeds: itertools.count) -> list[WarmUpRequest]:
    n = min(limits.max_num_seqs, BURST_PER_STEP * BURST_STEPS)
    prompt_len = max(1, limits.token_budget // BURST_PER_STEP)
    return [
        _request(i // BURST_PER_STEP, prompt_len, next(seeds), SAMPLING[kind], 8 + i % 16, limits.longest_request)
        for i, kind in zip(range(n), itertools.cycle(kinds))
    ]


def _ramp(limits: EngineLimits, kinds: list[str], seeds: itertools.count) -> list[WarmUpRequest]:
    """max_num_seqs requests arriving as RAMP_ARRIVALS says, so that decodes pile up beside new
    prefills; all stay until the last has arrived, then end over some 16 steps (decode batches of
    every size). Most prompts are short, a quarter long: just under 16 to 96 blocks, so that the
    block tables are a multiple of 16 blocks wide until the longest has grown past it (long contexts
    also split the decode kernel's keys most). All are scaled down to fill at most half the KV pool."""
    rng = random.Random(0)
    n, bs = limits.max_num_seqs, limits.block_size
    arrivals, step = [], 0
    for until, per_step in RAMP_ARRIVALS:
        while len(arrivals) < min(n, until or n):
            arrivals += [step] * min(per_step, n - len(arrivals))
            step += 1
    outputs = [arrivals[-1] - a + 2 + rng.randrange(16) for a in arrivals]
    prompts = [
        rng.randint(1, 8 * bs) if rng.random() < 0.75 else rng.randint(1, 6) * 16 * bs - rng.randrange(bs)
        for _ in range(n)
    ]
    room = limits.kv_capacity / 2 - sum(outputs) - n * bs  # a partly filled block per request at most
    scale = min(1.0, max(room, 0) / sum(prompts))
    return [
        _request(a, int(p * scale), next(seeds), SAMPLING[kind], out, limits.longest_request)
        for a, p, out, kind in zip(arrivals, prompts, outputs, itertools.cycle(kinds))
    ]


def _request(
    arrival: int, prompt_len: int, seed: int, sampling: SamplingParams, max_tokens: int, longest: int
) -> WarmUpRequest:
    prompt_len, max_tokens = _fit(prompt_len, max_tokens, longest)
    return WarmUpRequest(arrival, prompt_len, seed, replace(sampling, max_tokens=max_tokens, ignore_eos=True))


def _fit(prompt_len: int, max_tokens: int, longest: int) -> tuple[int, int]:
    """Lengths the engine accepts: at least one token each, and room for both in the context window."""
    max_tokens = max(1, min(max_tokens, longest - 2))
    return max(1, min(prompt_len, longest - 1 - max_tokens)), max_tokens


def warm_up(engine: LLMEngine, rng: torch.Generator, grammars: GrammarCompiler | None) -> WarmUpStats:
    """Runs the plan through `engine` (thrown away afterwards); `rng`, the sampler's generator for
    requests without a seed, is left as it was found."""
    started = time.perf_counter()
    state = rng.get_state()
    grammar = grammars.compile(StructuredOutput(JSON_OBJECT))[0] if grammars is not None else None
    waves = plan(EngineLimits.of(engine), grammar is not None)
    steps = output_tokens = failed = 0
    for w, wave in enumerate(waves):
        pending = sorted(enumerate(wave), key=lambda item: item[1].arrival_step)
        wave_step = 0
        while pending or engine.has_unfinished():
            while pending and pending[0][1].arrival_step <= wave_step:
                i, request = pending.pop(0)
                structured = request.sampling.structured is not None
                prompt = _prompt(request, engine.vocab_size)
                engine.add_request(f"warmup-{w}-{i}", prompt, request.sampling, grammar=grammar if structured else None)
            result = engine.step()
            output_tokens += sum(len(o.new_token_ids) for o in result.outputs)
            failed += len(result.failed)
            wave_step += 1
        steps += wave_step
    rng.set_state(state)
    if failed:
        log.warning("warm-up: %d requests failed (their steps ran out of GPU memory)", failed)
    requests = [r for wave in waves for r in wave]
    stats = WarmUpStats(
        len(requests), steps, sum(r.prompt_len for r in requests), output_tokens, time.perf_counter() - started
    )
    log.info(
        "warm-up: %d requests in %d steps (%d prompt, %d output tokens), %.1fs",
        stats.requests,
        stats.steps,
        stats.prompt_tokens,
        stats.output_tokens,
        stats.seconds,
    )
    return stats


def _prompt(request: WarmUpRequest, vocab_size: int) -> list[int]:
    rng = random.Random(request.prompt_seed)
    return [rng.randrange(vocab_size) for _ in range(request.prompt_len)]
