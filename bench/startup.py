"""Start-up: the wall time from spawning `python -m shoal runtime ...` to /ready answering 200, the
runtime's own breakdown of it by phase (shoal:startup_phase_seconds), then the same throughput
workload run twice over gRPC: the first run after start against the second. A kernel compiled in the
serving path stalls every request in its step; with the warm-up the first run should come within
10 % of the second.

The runtime compiles into a fresh Triton cache (--compile-cache-dir; a new machine), then by default
starts again on that cache (a restarted pod whose cache is on a volume): both starts are reported,
with how many kernels each start and each run compiled (new .cubin files in the cache). Requests are
random token ids, all sent at once, greedy, every one generating exactly its output length; the
second run has prompts of its own, so the prefix cache does not serve them. Tokens come back as gRPC
streams, so tokens/s here are the served path's, below bench/throughput.py's engine-only figures.

    python bench/startup.py --device cpu --num-requests 8 --input-len 64 --output-len 16   # CPU, embedded model
    python bench/startup.py --model bench/configs/llama-3.1-8b --load-format dummy --input-len 512 --output-len 256
    python bench/startup.py --model bench/configs/qwen2.5-0.5b --load-format dummy     # random 100-1024 in/out
    python bench/startup.py ... --no-warmup --no-restart --name startup_..._no_warmup  # the runtime without it
"""

import argparse
import asyncio
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.report import RESULTS_DIR, markdown_table, write_report  # noqa: E402
from bench.throughput import RunResult, Workload, add_workload_arguments, make_workload  # noqa: E402
from shoal import metric_names as names  # noqa: E402
from shoal.router.dev import wait_until_ready  # noqa: E402
from shoal.runtime.config import EngineConfig  # noqa: E402
from shoal.v1 import runtime_pb2 as pb  # noqa: E402
from shoal.v1 import runtime_pb2_grpc  # noqa: E402
from tests.runtime.server_process import RuntimeProcess  # noqa: E402

PHASES = ("import", "model_load", "kv_cache", "cuda_graphs", "warmup", "total")


@dataclass(frozen=True)
class Start:
    label: str
    ready_s: float  # spawn to /ready 200, as this process saw it
    phases: dict[str, float]  # the runtime's own breakdown
    kernels_compiled: int  # new in the cache by the time it was ready

    def row(self) -> list:
        phases = [f"{self.phases[p]:.1f}" if p in self.phases else "-" for p in PHASES]
        return [self.label, f"{self.ready_s:.1f}", *phases, self.kernels_compiled]


async def run_workload(target: str, workload: Workload, label: str) -> RunResult:
    """Every request at once, each streamed to its end; the clock runs from the first send to the last end."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)

        async def one(prompt: list[int], output_len: int) -> int:
            sampling = pb.SamplingParams(temperature=0, max_tokens=output_len, ignore_eos=True)
            request = pb.GenerateRequest(token_ids=pb.TokenIds(ids=prompt), sampling=sampling)
            return sum([len(r.token_ids) async for r in stub.Generate(request)])

        started = time.perf_counter()
        generated = await asyncio.gather(*map(one, workload.prompts, workload.output_lens))
        elapsed = time.perf_counter() - started
    assert sum(generated) == workload.output_tokens, (sum(generated), workload.output_tokens)
    return RunResult(label, elapsed, len(workload.prompts), workload.prompt_tokens, sum(generated))


def start_runtime(label: str, flags: list[str], cache: Path, timeout_s: float) -> tuple[Start, RuntimeProcess]:
    """Spawns the runtime and waits for /ready 200 (polled every 0.1 s)."""
    before = count_kernels(cache)
    spawned = time.monotonic()
    runtime = RuntimeProcess(*flags)
    failure = wait_until_ready(f"http://127.0.0.1:{runtime.metrics_port}/ready", runtime.process, timeout_s, 0.1)
    ready_s = time.monotonic() - spawned
    if failure is not None:
        tail = "\n".join(runtime.logs().splitlines()[-30:])
        runtime.stop()
        raise SystemExit(f"the runtime did not get ready: {failure}\n{tail}")
    start = Start(label, ready_s, startup_phases(runtime.scrape()), count_kernels(cache) - before)
    print(f"  {label}: ready in {ready_s:.1f} s, {start.kernels_compiled} kernels compiled: {start.phases}", flush=True)
    return start, runtime


def stop(runtime: RuntimeProcess, log: Path) -> None:
    """Stops the runtime, its log so far appended to `log` (RuntimeProcess deletes its own)."""
    with open(log, "a") as out:
        out.write(runtime.logs())
    runtime.stop()


def startup_phases(metrics: str) -> dict[str, float]:
    """The runtime's shoal:startup_phase_seconds, by phase."""
    return {
        sample.labels[names.LABEL_PHASE]: sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == names.STARTUP_PHASE_SECONDS
    }


def count_kernels(cache: Path) -> int:
    """Kernels Triton compiled into the cache (one .cubin each on CUDA; none on a CPU)."""
    return sum(1 for _ in cache.rglob("*.cubin")) if cache.exists() else 0


def runtime_flags(args: argparse.Namespace, cache: Path) -> list[str]:
    flags = ["--model", args.model, "--load-format", args.load_format, "--device", args.device, "--dtype", args.dtype]
    flags += ["--seed", str(args.seed), "--compile-cache-dir", str(cache), "--log-level", "INFO"]
    for flag in ("max_num_seqs", "max_num_batched_tokens", "kv_cache_memory"):
        if getattr(args, flag) is not None:
            flags += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    if args.warmup is not None:
        flags.append("--warmup" if args.warmup else "--no-warmup")
    return flags


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_workload_arguments(parser)
    parser.add_argument("--max-num-seqs", type=int, default=None, help=f"default {EngineConfig.max_num_seqs}")
    parser.add_argument("--max-num-batched-tokens", type=int, default=None, help="default: the runtime's")
    parser.add_argument("--kv-cache-memory", default=None, help="e.g. 4GiB (default: the runtime's)")
    parser.add_argument(
        "--warmup", action=argparse.BooleanOptionalAction, default=None, help="passed on (default: the runtime's)"
    )
    parser.add_argument(
        "--compile-cache-dir", type=Path, default=None, help="Triton's cache for the runtime (default: a fresh one)"
    )
    parser.add_argument(
        "--restart",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start the runtime again on the same cache once the runs are done",
    )
    parser.add_argument("--ready-timeout", type=float, default=600.0, help="seconds")
    parser.add_argument("--name", default=None, help="result file name (default: from model, device, workload)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()
    if (args.input_len is None) != (args.output_len is None):
        parser.error("--input-len and --output-len go together")
    return args


def main() -> None:
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="shoal-startup-"))
    cache = args.compile_cache_dir or workdir / "triton-cache"
    flags = runtime_flags(args, cache)
    print(f"runtime log: {workdir / 'runtime.log'} (once stopped); Triton cache: {cache}", flush=True)

    log = workdir / "runtime.log"
    first, runtime = start_runtime("first start", flags, cache, args.ready_timeout)
    starts = [first]
    try:
        info = runtime.stub().GetModelInfo(pb.GetModelInfoRequest())
        runs, compiled, workloads = [], [], []
        for i, label in enumerate(("first run after start", "second run")):
            workloads.append(
                make_workload(argparse.Namespace(**{**vars(args), "seed": args.seed + i}), info.vocab_size)
            )
            before = count_kernels(cache)
            runs.append(asyncio.run(run_workload(runtime.target, workloads[-1], label)))
            compiled.append(count_kernels(cache) - before)
            print(f"  {label}: {runs[-1].output_tokens_per_s:,.0f} output tok/s, {compiled[-1]} kernels compiled")
    finally:
        stop(runtime, log)
    if args.restart:
        again, runtime = start_runtime("restart, same cache", flags, cache, args.ready_timeout)
        stop(runtime, log)
        starts.append(again)

    ratio = runs[0].output_tokens_per_s / runs[1].output_tokens_per_s
    start_table = markdown_table(["start", "ready (s)", *PHASES, "kernels compiled"], [s.row() for s in starts])
    run_table = markdown_table(
        ["run", "requests", "seconds", "req/s", "output tok/s", "total tok/s", "kernels compiled"],
        [run.row() + [n] for run, n in zip(runs, compiled, strict=True)],
    )
    summary = f"First run / second run: {ratio:.2f}x output tokens/s (goal: at least 0.90x).\n"
    print("\n" + start_table + "\n\n" + run_table + "\n\n" + summary)

    description = f"{workloads[0].description} (the second run: seed {args.seed + 1})"
    slug = re.sub(r"[^a-z0-9.]+", "-", info.served_model_name.lower()).strip("-")
    mode = f"fixed{args.input_len}-{args.output_len}" if args.input_len else "random"
    device = info.device.split(":")[0]
    name = args.name or f"startup_{slug}_{device}_{mode}_n{args.num_requests}"
    settings = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("name", "results_dir")
    }
    payload = {
        "benchmark": "startup",
        "model": {"name": info.served_model_name, "source": info.source, "dtype": info.dtype, "device": info.device},
        "workload": description,
        "settings": settings,
        "runtime_flags": flags,
        "starts": [asdict(s) for s in starts],
        "runs": [
            {**asdict(r), "output_tokens_per_s": r.output_tokens_per_s, "kernels_compiled": n}
            for r, n in zip(runs, compiled, strict=True)
        ],
        "first_over_second": ratio,
    }
    title = (
        f"# Start-up: {info.served_model_name}, {payload['workload']}\n\n{info.dtype} on {info.device}; "
        "phases in seconds as the runtime reports them; kernels compiled: new .cubin files in the Triton cache "
        "(fresh before the first start).\n\n"
    )
    markdown = title + start_table + "\n\n" + run_table + "\n\n" + summary
    json_path, md_path = write_report(name, payload, markdown, args.results_dir)
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
