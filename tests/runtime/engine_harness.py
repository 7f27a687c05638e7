"""Drives an LLMEngine offline the way the server would, and produces HF transformers references."""

from pathlib import Path

import torch

from shoal.runtime.build import BuiltEngine, build_engine
from shoal.runtime.config import EngineConfig
from shoal.runtime.engine.llm_engine import LLMEngine
from shoal.runtime.sampling.params import SamplingParams


def build(model_dir: Path, **overrides) -> BuiltEngine:
    settings = {"model": str(model_dir), "dtype": "float32", "device": "cpu", "kv_cache_memory": 64 << 20}
    settings.update(overrides)
    return build_engine(EngineConfig(**settings))


def run_to_completion(
    engine: LLMEngine,
    prompts: list[list[int]],
    sampling: SamplingParams,
    arrival_steps: list[int] | None = None,
) -> list[list[int]]:
    """Adds prompt i at step arrival_steps[i] (all at once by default); returns each one's output ids."""
    arrival_steps = arrival_steps or [0] * len(prompts)
    outputs: dict[str, list[int]] = {}
    step = 0
    pending = sorted(range(len(prompts)), key=lambda i: arrival_steps[i])
    while pending or engine.has_unfinished():
        while pending and arrival_steps[pending[0]] <= step:
            i = pending.pop(0)
            engine.add_request(str(i), prompts[i], sampling)
            outputs[str(i)] = []
        for output in engine.step().outputs:
            outputs[output.request_id].extend(output.new_token_ids)
        step += 1
    return [outputs[str(i)] for i in range(len(prompts))]


def hf_greedy(model, prompt: list[int], max_new_tokens: int, eos_token_id: int | list[int]) -> list[int]:
    """HF generate on one prompt alone (no padding): the reference output."""
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt], device=device),
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long, device=device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eos_token_id,
            pad_token_id=eos_token_id if isinstance(eos_token_id, int) else eos_token_id[0],
        )
    return out[0, len(prompt) :].tolist()
