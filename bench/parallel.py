"""Tensor and pipeline parallelism against one GPU: the same workloads through an engine of 1 and of
N ranks.

Per setting (one process each: a tensor-parallel engine's ranks are processes of their own):
- bs1 decode: one request, a 512-token prompt, 256 tokens out; the mean time between its tokens;
- 512/256: 256 requests of 512 prompt tokens and 256 output tokens (vLLM's fixed-length run);
- random: 256 requests, prompts of 100-1024 tokens, outputs of 100-1024 (seed 0).
Each runs twice: the first meets its shapes for the first time since the engine started (cold),
the second is the steady figure (warm). Output tokens per second, and per GPU.

Rows accumulate in bench/results/<name>.json (one invocation adds or replaces its setting's row)
and the table is written again from all of them: run the one-GPU anchor and the parallel settings
in the same session, on the same machine.

    python bench/parallel.py --model bench/configs/llama-3.1-8b --load-format dummy --tensor-parallel-size 1
    python bench/parallel.py --model bench/configs/llama-3.1-8b --load-format dummy --tensor-parallel-size 2
    python bench/parallel.py --model bench/configs/llama-3.1-70b --load-format dummy --tensor-parallel-size 2
"""

import argparse
import faulthandler
import json
import logging
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.report import RESULTS_DIR, markdown_table, write_report  # noqa: E402
from bench.throughput import Workload, make_workload, run_shoal  # noqa: E402
from shoal.runtime.build import BuiltEngine, build_engine, freeze_long_lived_objects  # noqa: E402
from shoal.runtime.config import EngineConfig  # noqa: E402
from shoal.runtime.sampling.params import SamplingParams  # noqa: E402
from shoal.runtime.startup import TOTAL, StartupClock  # noqa: E402

BS1_PROMPT, BS1_OUTPUT = 512, 256


def bs1_itl_ms(built: BuiltEngine, vocab_size: int) -> float:
    engine = built.engine
    prompt = [100 + (i * 7919) % (vocab_size - 200) for i in range(BS1_PROMPT)]
    sampling = SamplingParams(temperature=0, max_tokens=BS1_OUTPUT, ignore_eos=True)
    engine.add_request(f"bs1-{time.monotonic_ns()}", prompt, sampling)
    stamps = []
    while engine.has_unfinished():
        if any(o.new_token_ids for o in engine.step().outputs):
            stamps.append(time.perf_counter())
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return 1000 * statistics.fmean(gaps)


def workloads(vocab_size: int, num_requests: int) -> dict[str, Workload]:
    fixed = argparse.Namespace(seed=0, num_requests=num_requests, input_len=512, output_len=256)
    random_lengths = argparse.Namespace(
        seed=0,
        num_requests=num_requests,
        input_len=None,
        output_len=None,
        input_range=[100, 1024],
        output_range=[100, 1024],
    )
    return {"512/256": make_workload(fixed, vocab_size), "random": make_workload(random_lengths, vocab_size)}


def measure(args: argparse.Namespace) -> dict:
    config = EngineConfig(
        model=args.model,
        load_format=args.load_format,
        tensor_parallel_size=args.tensor_parallel_size,
        pipeline_parallel_size=args.pipeline_parallel_size,
        max_model_len=args.max_model_len,
        enforce_eager=args.enforce_eager,
    )
    clock = StartupClock()
    built = build_engine(config, clock)
    freeze_long_lived_objects()
    info = built.info
    row = {
        "model": Path(args.model).name,
        "tensor_parallel_size": args.tensor_parallel_size,
        "pipeline_parallel_size": args.pipeline_parallel_size,
        "gpus": args.tensor_parallel_size * args.pipeline_parallel_size,
        "cuda_graphs": not args.enforce_eager,
        "startup_s": clock.breakdown().seconds[TOTAL],
        "kv_cache_tokens": info.kv_cache_tokens,
    }
    try:
        row["bs1_itl_ms"] = [bs1_itl_ms(built, info.vocab_size) for _ in ("cold", "warm")]
        print(f"bs1 ITL ms (cold, warm): {row['bs1_itl_ms']}", flush=True)
        for name, workload in workloads(info.vocab_size, args.num_requests).items():
            runs = [run_shoal(built, workload) for _ in ("cold", "warm")]
            row[name] = [r.output_tokens_per_s for r in runs]
            print(f"{name} output tok/s (cold, warm): {row[name]}", flush=True)
            row[f"{name}_workload"] = workload.description
    finally:
        built.close()
    return {"info": {"device": info.device, "dtype": info.dtype, "max_model_len": info.max_model_len}, "row": row}


def render(rows: list[dict]) -> str:
    anchor = {r["model"]: r for r in rows if r["gpus"] == 1}
    table = []
    for r in rows:
        one = anchor.get(r["model"])
        itl_ratio = f"{r['bs1_itl_ms'][1] / one['bs1_itl_ms'][1]:.2f}x" if one else "- (does not fit one GPU)"
        random_ratio = f"{r['random'][1] / one['random'][1]:.2f}x" if one else "-"
        table.append(
            [
                r["model"],
                f"{r['tensor_parallel_size']} x {r['pipeline_parallel_size']}",
                "yes" if r["cuda_graphs"] else "no (eager)",
                f"{r['bs1_itl_ms'][0]:.2f} / {r['bs1_itl_ms'][1]:.2f}",
                itl_ratio,
                f"{r['512/256'][0]:,.0f} / {r['512/256'][1]:,.0f}",
                f"{r['random'][0]:,.0f} / {r['random'][1]:,.0f}",
                random_ratio,
                f"{r['random'][1] / r['gpus']:,.0f}",
                f"{r['startup_s']:.0f}",
            ]
        )
    headers = [
        "model",
        "TP x PP",
        "CUDA graphs",
        "bs1 ITL ms (cold / warm)",
        "bs1 ITL vs one GPU",
        "512/256 output tok/s (cold / warm)",
        "random output tok/s (cold / warm)",
        "random vs one GPU",
        "random tok/s per GPU",
        "start s",
    ]
    return markdown_table(headers, table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--load-format", default="dummy")
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--pipeline-parallel-size", type=int, default=1)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--enforce-eager", action="store_true")
    parser.add_argument("--num-requests", type=int, default=256, help="per workload (a CPU check takes a few)")
    parser.add_argument("--name", default="parallel_llama_cuda")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # where a stuck run waits

    measured = measure(args)
    path = RESULTS_DIR / f"{args.name}.json"
    previous = json.loads(path.read_text())["rows"] if path.exists() else []

    def key(row: dict) -> tuple:
        return row["model"], row["tensor_parallel_size"], row["pipeline_parallel_size"]

    rows = sorted([r for r in previous if key(r) != key(measured["row"])] + [measured["row"]], key=key)
    table = render(rows)
    print(table)
    info = measured["info"]
    description = (
        f"Random weights (`--load-format dummy`) on {info['device']} GPUs, {info['dtype']}, max_model_len "
        f"{info['max_model_len']}; greedy, EOS ignored. bs1: one request, {BS1_PROMPT} prompt tokens, {BS1_OUTPUT} "
        f"out. 512/256: {rows[-1]['512/256_workload']}. random: {rows[-1]['random_workload']}. Cold: the first run "
        "after the engine started; warm: the second."
    )
    payload = {"benchmark": "tensor and pipeline parallelism", "settings": vars(args), "description": description}
    payload["rows"] = rows
    markdown = f"# Tensor and pipeline parallelism\n\n{description}\n\n{table}\n"
    print("wrote", *write_report(args.name, payload, markdown))


if __name__ == "__main__":
    main()
