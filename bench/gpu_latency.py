"""Latency on the GPU, with the figures they are judged against, all measured in the same run:

* HBM bandwidth (a device-to-device copy, bytes read + written) and the batch-1 decode roofline,
  weight bytes / bandwidth;
* decode latency at batch 1, 8 and 64 with a 512-token context (ms per step = per output token);
* TTFT of a single 2,048-token prompt on an idle engine;
* KV capacity in tokens against what the memory free after loading the weights would hold;
* a torch profiler summary of one decode step at batch 1 and at batch 256.

    python bench/gpu_latency.py --model bench/configs/llama-3.1-8b --load-format dummy
"""

import argparse
import random
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.report import markdown_table, write_report  # noqa: E402
from shoal.runtime.build import BuiltEngine, build_engine, freeze_long_lived_objects  # noqa: E402
from shoal.runtime.config import EngineConfig  # noqa: E402
from shoal.runtime.sampling.params import SamplingParams  # noqa: E402


def measure_bandwidth(device: torch.device, size_bytes: int = 4 << 30, repeats: int = 20) -> float:
    """Bytes per second of a large device-to-device copy, counting bytes read and written."""
    source = torch.empty(size_bytes // 2, dtype=torch.bfloat16, device=device).normal_()
    target = torch.empty_like(source)
    target.copy_(source)
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        target.copy_(source)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    del source, target
    torch.cuda.empty_cache()
    return 2 * size_bytes / sorted(times)[len(times) // 2]


def random_prompt(rng: random.Random, length: int, vocab: int) -> list[int]:
    return [rng.randrange(100, vocab - 100) for _ in range(length)]


def decode_step_seconds(built: BuiltEngine, batch: int, context: int, steps: int, rng: random.Random) -> float:
    """Median wall time of a decode step for `batch` sequences at about `context` tokens."""
    engine = built.engine
    for i in range(batch):
        engine.add_request(
            f"decode-{batch}-{i}",
            random_prompt(rng, context, built.info.vocab_size),
            SamplingParams(temperature=0, max_tokens=steps + 3, ignore_eos=True),
        )
    while engine.stats().num_waiting or any(r.num_uncomputed_tokens > 1 for r in engine.scheduler.running):
        engine.step()  # prefill
    engine.step()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        engine.step()
        times.append(time.perf_counter() - started)
    while engine.has_unfinished():
        engine.step()
    return sorted(times)[len(times) // 2]


def ttft_seconds(built: BuiltEngine, length: int, rng: random.Random, repeats: int = 5) -> float:
    """Median time from adding one prompt to its first token, on an idle engine (fresh tokens each
    time, so the prefix cache never helps)."""
    engine = built.engine
    times = []
    for i in range(repeats + 1):
        prompt = random_prompt(rng, length, built.info.vocab_size)
        started = time.perf_counter()
        engine.add_request(f"ttft-{i}", prompt, SamplingParams(temperature=0, max_tokens=1))
        while engine.has_unfinished():
            engine.step()
        times.append(time.perf_counter() - started)
    return sorted(times[1:])[repeats // 2]  # the first is a warm-up


def profile_decode_step(built: BuiltEngine, batch: int, context: int, rng: random.Random, top: int = 12) -> str:
    from torch.profiler import ProfilerActivity, profile

    engine = built.engine
    for i in range(batch):
        engine.add_request(
            f"profile-{batch}-{i}",
            random_prompt(rng, context, built.info.vocab_size),
            SamplingParams(temperature=0, max_tokens=8, ignore_eos=True),
        )
    while any(r.num_uncomputed_tokens > 1 for r in engine.scheduler.running) or engine.stats().num_waiting:
        engine.step()
    engine.step()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        started = time.perf_counter()
        engine.step()
        torch.cuda.synchronize()
        wall = time.perf_counter() - started
    while engine.has_unfinished():
        engine.step()
    table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=top, max_name_column_width=60)
    return f"Decode step at batch {batch}, context {context}: {wall * 1000:.2f} ms wall.\n\n```\n{table}\n```\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--load-format", default="dummy")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--gpu-memory-utilization", type=float, default=EngineConfig.gpu_memory_utilization)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--ttft-prompt", type=int, default=2048)
    parser.add_argument("--decode-steps", type=int, default=30)
    parser.add_argument("--profile-batches", type=int, nargs="*", default=[1, 256])
    parser.add_argument("--name", default=None)
    args = parser.parse_args()

    device = torch.device("cuda")
    bandwidth = measure_bandwidth(device)
    config = EngineConfig(
        model=args.model,
        load_format=args.load_format,
        dtype=args.dtype,
        gpu_memory_utilization=args.gpu_memory_utilization,
    )
    built = build_engine(config)
    freeze_long_lived_objects()
    model = built.engine.runner.model
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    roofline_s = weight_bytes / bandwidth
    rng = random.Random(0)

    rows, decode = [], {}
    for batch in args.batches:
        seconds = decode_step_seconds(built, batch, args.context, args.decode_steps, rng)
        decode[batch] = seconds
        rows.append(
            [
                f"decode, batch {batch}, context {args.context}",
                f"{seconds * 1000:.2f} ms/token",
                f"{seconds / roofline_s:.2f}x roofline" if batch == 1 else f"{batch / seconds:,.0f} tok/s",
            ]
        )
    ttft = ttft_seconds(built, args.ttft_prompt, rng)
    rows.append([f"TTFT, one {args.ttft_prompt}-token prompt, idle engine", f"{ttft * 1000:.1f} ms", ""])
    rows.append(
        [
            "batch-1 roofline: weight bytes / HBM bandwidth",
            f"{roofline_s * 1000:.2f} ms/token",
            f"{weight_bytes / 2**30:.2f} GiB at {bandwidth / 1e12:.2f} TB/s",
        ]
    )
    capacity = built.info.kv_cache_tokens
    free_tokens = built.info.free_memory_tokens
    rows.append(
        [
            "KV capacity",
            f"{capacity:,} tokens",
            f"{capacity / free_tokens:.1%} of the {free_tokens:,} tokens the free memory after the weights would hold",
        ]
    )
    profiles = [profile_decode_step(built, batch, args.context, rng) for batch in args.profile_batches]

    table = markdown_table(["measurement", "value", "against"], rows)
    print(table)
    for text in profiles:
        print(text)
    slug = re.sub(r"[^a-z0-9.]+", "-", Path(args.model).name.lower()).strip("-")
    payload = {
        "benchmark": "gpu_latency",
        "model": {
            "path": args.model,
            "load_format": args.load_format,
            "dtype": built.info.dtype,
            "weight_bytes": weight_bytes,
        },
        "settings": vars(args),
        "hbm_bandwidth_bytes_per_s": bandwidth,
        "roofline_decode_s": roofline_s,
        "decode_step_s": {str(k): v for k, v in decode.items()},
        "ttft_s": ttft,
        "kv_cache_tokens": capacity,
        "free_memory_tokens": free_tokens,
        "profiles": profiles,
    }
    title = f"# GPU latency: {Path(args.model).name} ({built.info.dtype}, random weights)\n\n"
    write_report(
        args.name or f"gpu_latency_{slug}", payload, title + table + "\n\n## Profiles\n\n" + "\n".join(profiles)
    )


if __name__ == "__main__":
    main()
