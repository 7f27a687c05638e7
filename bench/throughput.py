"""Offline throughput: N requests through Shoal's engine and, in the same run on the same machine,
through HF transformers with static batching (the anchor).

Requests are random token ids with random lengths (default: 256 requests, inputs 100-1024, outputs
100-1024, seed 0) or fixed lengths (--input-len/--output-len). Every request generates exactly its
output length (EOS ignored). HF static batching pads each batch to its longest prompt and runs until
its longest output; only the requested tokens count as useful output, as in vLLM's benchmark.

    python bench/throughput.py --num-requests 16                      # CPU, embedded SmolLM2
    python bench/throughput.py --model cfg/llama-3.1-8b --load-format dummy --input-len 512 --output-len 256
"""

import argparse
import gc
import json
import random
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.report import markdown_table, write_report  # noqa: E402
from shoal.runtime.build import BuiltEngine, build_engine, freeze_long_lived_objects  # noqa: E402
from shoal.runtime.config import EngineConfig  # noqa: E402
from shoal.runtime.model.arch_config import ModelArchConfig  # noqa: E402
from shoal.runtime.model.loader import load_hf_config, materialize, resolve_model_source  # noqa: E402
from shoal.runtime.rank_build import resolve_device, resolve_dtype  # noqa: E402
from shoal.runtime.sampling.params import SamplingParams  # noqa: E402


@dataclass(frozen=True)
class Workload:
    prompts: list[list[int]]
    output_lens: list[int]
    description: str

    @property
    def prompt_tokens(self) -> int:
        return sum(len(p) for p in self.prompts)

    @property
    def output_tokens(self) -> int:
        return sum(self.output_lens)


@dataclass(frozen=True)
class RunResult:
    system: str
    elapsed_s: float
    requests: int
    prompt_tokens: int
    output_tokens: int

    @property
    def output_tokens_per_s(self) -> float:
        return self.output_tokens / self.elapsed_s

    @property
    def total_tokens_per_s(self) -> float:
        return (self.prompt_tokens + self.output_tokens) / self.elapsed_s

    def row(self) -> list:
        return [
            self.system,
            self.requests,
            f"{self.elapsed_s:.1f}",
            f"{self.requests / self.elapsed_s:.2f}",
            f"{self.output_tokens_per_s:,.0f}",
            f"{self.total_tokens_per_s:,.0f}",
        ]


def add_workload_arguments(parser: argparse.ArgumentParser) -> None:
    """The model and the requests: random lengths in ranges, or fixed ones (--input-len, --output-len)."""
    parser.add_argument("--model", default="default")
    parser.add_argument("--load-format", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--num-requests", type=int, default=256)
    parser.add_argument("--input-range", type=int, nargs=2, default=[100, 1024], metavar=("MIN", "MAX"))
    parser.add_argument("--output-range", type=int, nargs=2, default=[100, 1024], metavar=("MIN", "MAX"))
    parser.add_argument("--input-len", type=int, default=None, help="fixed-length mode: prompt tokens")
    parser.add_argument("--output-len", type=int, default=None, help="fixed-length mode: output tokens")
    parser.add_argument("--seed", type=int, default=0)


def make_workload(args: argparse.Namespace, vocab_size: int) -> Workload:
    rng = random.Random(args.seed)
    low_id, high_id = 100, vocab_size - 100  # clear of special tokens at either end
    if args.input_len:
        input_lens = [args.input_len] * args.num_requests
        output_lens = [args.output_len] * args.num_requests
        description = f"fixed {args.input_len} in / {args.output_len} out"
    else:
        input_lens = [rng.randint(*args.input_range) for _ in range(args.num_requests)]
        output_lens = [rng.randint(*args.output_range) for _ in range(args.num_requests)]
        description = (
            f"random {args.input_range[0]}-{args.input_range[1]} in / {args.output_range[0]}-{args.output_range[1]} out"
        )
    prompts = [[rng.randrange(low_id, high_id) for _ in range(n)] for n in input_lens]
    return Workload(prompts, output_lens, f"{args.num_requests} requests, {description}, seed {args.seed}")


def run_shoal(built: BuiltEngine, workload: Workload) -> RunResult:
    engine = built.engine
    started = time.perf_counter()
    for i, (prompt, out_len) in enumerate(zip(workload.prompts, workload.output_lens, strict=True)):
        engine.add_request(str(i), prompt, SamplingParams(temperature=0, max_tokens=out_len, ignore_eos=True))
    generated = 0
    while engine.has_unfinished():
        generated += sum(len(o.new_token_ids) for o in engine.step().outputs)
    _sync(built.info.device)
    elapsed = time.perf_counter() - started
    assert generated == workload.output_tokens, (generated, workload.output_tokens)
    return RunResult("shoal", elapsed, len(workload.prompts), workload.prompt_tokens, generated)


def run_hf_static(model, workload: Workload, batch_size: int, device: torch.device) -> RunResult:
    pad_id = 0
    started = time.perf_counter()
    for start in range(0, len(workload.prompts), batch_size):
        prompts = workload.prompts[start : start + batch_size]
        width = max(len(p) for p in prompts)
        input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        longest = max(workload.output_lens[start : start + batch_size])
        with torch.no_grad():
            model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                max_new_tokens=longest,
                min_new_tokens=longest,
                do_sample=False,
                pad_token_id=pad_id,
            )
    _sync(str(device))
    elapsed = time.perf_counter() - started
    return RunResult(
        f"HF transformers static batching (batch {batch_size})",
        elapsed,
        len(workload.prompts),
        workload.prompt_tokens,
        workload.output_tokens,
    )


def run_hf_continuous(model, workload: Workload, device: torch.device) -> RunResult:
    """HF's own continuous batching (generate_batch): one call, every request to the longest output."""
    from transformers import GenerationConfig

    config = GenerationConfig(
        max_new_tokens=max(workload.output_lens), do_sample=False, eos_token_id=None, pad_token_id=0
    )
    started = time.perf_counter()
    outputs = model.generate_batch(inputs=workload.prompts, generation_config=config)
    _sync(str(device))
    elapsed = time.perf_counter() - started
    generated = sum(len(o.generated_tokens) for o in outputs.values())
    return RunResult(
        "HF transformers generate_batch (continuous batching)",
        elapsed,
        len(workload.prompts),
        workload.prompt_tokens,
        min(generated, workload.output_tokens),
    )


def run_hf_continuous_with_timeout(argv: list[str], timeout_s: float) -> RunResult | str:
    """Runs the continuous-batching anchor in a child process, which is killed after timeout_s."""
    command = [sys.executable, str(Path(__file__).resolve()), *argv, "--anchor-child"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout_s:.0f} s"
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        return f"failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"
    return RunResult(**json.loads(lines[-1]))


def load_hf_model(args: argparse.Namespace, source, dtype: torch.dtype, device: torch.device):
    from transformers import AutoModelForCausalLM

    if source.kind == "dummy":
        torch.manual_seed(args.seed)
        with torch.device(device):  # initialise on the device: random init of 8B weights on a CPU takes minutes
            return AutoModelForCausalLM.from_config(load_hf_config(source), dtype=dtype).eval()
    return AutoModelForCausalLM.from_pretrained(str(source.directory), dtype=dtype).to(device).eval()


def warm_up_workload() -> Workload:
    return Workload([[100 + i for i in range(32)]] * 2, [8, 8], "warm-up")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_workload_arguments(parser)
    parser.add_argument("--max-num-seqs", type=int, default=EngineConfig.max_num_seqs)
    parser.add_argument("--max-num-batched-tokens", type=int, default=EngineConfig.max_num_batched_tokens)
    parser.add_argument("--kv-cache-memory", type=int, default=None, help="bytes")
    parser.add_argument("--hf-batch-size", type=int, default=64)
    parser.add_argument("--skip-hf", action="store_true", help="no anchor (the report says so)")
    parser.add_argument(
        "--hf-continuous-timeout",
        type=float,
        default=0,
        help="also run HF generate_batch, killed after this many seconds (0: skip)",
    )
    parser.add_argument("--anchor-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--name", default=None, help="result file name (default: from model, device, workload)")
    args = parser.parse_args()
    if (args.input_len is None) != (args.output_len is None):
        parser.error("--input-len and --output-len go together")

    source = materialize(resolve_model_source(args.model, args.load_format))
    arch = ModelArchConfig.from_hf(load_hf_config(source))
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, arch, device)
    workload = make_workload(args, arch.vocab_size)
    if args.anchor_child:
        model = load_hf_model(args, source, dtype, device)
        run_hf_continuous(model, warm_up_workload(), device)
        print(json.dumps(asdict(run_hf_continuous(model, workload, device))))
        return
    print(f"workload: {workload.description}; model {source.name} ({source.kind}), {dtype} on {device}", flush=True)

    results = []
    if not args.skip_hf:  # the anchor runs first and is freed, so the engine can size its KV pool after it
        hf_model = load_hf_model(args, source, dtype, device)
        run_hf_static(hf_model, warm_up_workload(), args.hf_batch_size, device)
        results.append(run_hf_static(hf_model, workload, args.hf_batch_size, device))
        print(f"  {results[-1].system}: {results[-1].output_tokens_per_s:,.0f} output tok/s", flush=True)
        del hf_model
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    notes = []
    if args.hf_continuous_timeout:
        child_argv = [a for a in sys.argv[1:] if a != "--anchor-child"]
        outcome = run_hf_continuous_with_timeout(child_argv, args.hf_continuous_timeout)
        if isinstance(outcome, RunResult):
            results.append(outcome)
            print(f"  {outcome.system}: {outcome.output_tokens_per_s:,.0f} output tok/s", flush=True)
        else:
            notes.append(f"HF transformers generate_batch (continuous batching): {outcome}.")
            print(f"  HF generate_batch: {outcome}", flush=True)

    config = EngineConfig(
        model=args.model,
        load_format=args.load_format,
        dtype=args.dtype,
        device=args.device,
        max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens,
        kv_cache_memory=args.kv_cache_memory,
        seed=args.seed,
    )
    built = build_engine(config)
    freeze_long_lived_objects()
    run_shoal(built, warm_up_workload())
    results.insert(0, run_shoal(built, workload))
    print(f"  shoal: {results[0].output_tokens_per_s:,.0f} output tok/s", flush=True)

    headers = ["system", "requests", "seconds", "req/s", "output tok/s", "total tok/s"]
    table = markdown_table(headers, [r.row() for r in results])
    speedup = "".join(
        f"\n\nShoal / {r.system}: {results[0].output_tokens_per_s / r.output_tokens_per_s:.2f}x output tokens/s."
        for r in results[1:]
    )
    speedup += "".join(f"\n\n{note}" for note in notes) + "\n"
    print("\n" + table + speedup)

    slug = re.sub(r"[^a-z0-9.]+", "-", source.name.lower()).strip("-")
    mode = f"fixed{args.input_len}-{args.output_len}" if args.input_len else "random"
    name = args.name or f"throughput_{slug}_{device.type}_{mode}_n{args.num_requests}"
    settings = {k: v for k, v in vars(args).items() if k != "name"}
    payload = {
        "benchmark": "throughput",
        "model": {"name": source.name, "source": source.describe(), "dtype": str(dtype), "device": str(device)},
        "workload": workload.description,
        "settings": settings,
        "engine": {
            "kv_cache_tokens": built.info.kv_cache_tokens,
            "free_memory_tokens": built.info.free_memory_tokens,
            "max_model_len": built.info.max_model_len,
            "max_num_batched_tokens": built.engine.scheduler.config.max_num_batched_tokens,  # as resolved
            "async_scheduling": built.engine.overlap.async_scheduling,
            "cuda_graphs": built.engine.runner.decode_graphs is not None,
        },
        "anchors": [r.system for r in results[1:]],
        "notes": notes,
        "results": [
            {**asdict(r), "output_tokens_per_s": r.output_tokens_per_s, "total_tokens_per_s": r.total_tokens_per_s}
            for r in results
        ],
    }
    title = f"# Throughput: {source.name}, {workload.description}\n\n{dtype} on {device}.\n\n"
    json_path, md_path = write_report(name, payload, title + table + speedup)
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
