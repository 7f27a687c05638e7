"""What speculative decoding buys: per-request output tokens/s and inter-token latency at batch 1, 8
and 64, with drafts (prompt lookup, or a draft model) against the same engine without them (the
anchor, measured in the same run, with everything it would otherwise use: async scheduling, CUDA
graphs), with the acceptance the drafts got.

A draft model is a directory (`--draft-model`), or the model's own first layers (`--draft-layers`,
bench/truncated_model.py). With random weights (`--load-format dummy`), `--draft-model` naming the
model's own directory makes the draft the very model (same seed, same weights): everything is
accepted, which measures the mechanism's ceiling, not a real draft's gain.

Two workloads: `rewrite` (the model is asked to rewrite a text it is given, which a real model copies
much of: where prompt lookup pays) and `random` (random prompt tokens; with random weights acceptance
means nothing, so this measures the overhead of drafting when little is accepted, with the backoff
that turns drafting off for such requests).

    python bench/speculative.py                                             # CPU, embedded SmolLM2, rewrite
    python bench/speculative.py --model .gpu/smollm2 --batch-sizes 1 8 64   # GPU, real weights
    python bench/speculative.py --model bench/configs/llama-3.1-8b --load-format dummy --workload random
    python bench/speculative.py --method draft_model --draft-layers 10           # CPU, a truncated draft
"""

import argparse
import gc
import random
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.report import markdown_table, write_report  # noqa: E402
from bench.truncated_model import write_truncated_copy  # noqa: E402
from shoal.runtime.build import BuiltEngine, build_engine, freeze_long_lived_objects  # noqa: E402
from shoal.runtime.config import EngineConfig  # noqa: E402
from shoal.runtime.model.loader import materialize, resolve_model_source  # noqa: E402
from shoal.runtime.sampling.params import SamplingParams  # noqa: E402
from shoal.runtime.speculative.config import DRAFT_MODEL, NGRAM, SpeculativeConfig  # noqa: E402

TEXT = (
    "The harbour was quiet in the early morning. Fishing boats rocked gently against the pier while gulls "
    "circled overhead, calling to one another. An old man sat on a wooden crate mending a net, his hands "
    "moving with the ease of someone who had done the same work for fifty years. Down the street the baker "
    "opened his shutters and the smell of fresh bread drifted towards the water."
)


@dataclass(frozen=True)
class Run:
    speculative: bool
    batch_size: int
    output_tokens: int
    outputs: list[list[int]]  # each request's tokens (greedy: the same with and without drafts)
    per_request_tokens_per_s: float  # mean over the batch's requests, on the second run (warm)
    first_run_tokens_per_s: float  # the same on the batch's first run: shapes met for the first time (cold)
    itl_ms: float  # mean time between a request's tokens after its first
    steps: int
    draft_tokens: int
    accepted_tokens: int

    @property
    def acceptance(self) -> float | None:
        return self.accepted_tokens / self.draft_tokens if self.draft_tokens else None


def prompts(built: BuiltEngine, workload: str, batch_size: int, seed: int) -> list[list[int]]:
    if workload == "rewrite":
        tokenizer = built.tokenizer
        ask = [{"role": "user", "content": f"Rewrite this text, word for word:\n\n{TEXT}"}]
        text = tokenizer.apply_chat_template(ask, add_generation_prompt=True, tokenize=False)
        return [tokenizer.encode(text, add_special_tokens=False)] * batch_size
    rng = random.Random(seed)
    return [[rng.randrange(built.info.vocab_size) for _ in range(512)] for _ in range(batch_size)]


def run_batch(
    built: BuiltEngine, asked: list[list[int]], max_tokens: int, workload: str
) -> tuple[int, float, float, int]:
    engine = built.engine
    sampling = SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=workload == "random")
    started = time.perf_counter()
    first, last, tokens, ids = {}, {}, {}, {}
    index = {}
    for i, prompt in enumerate(asked):
        request_id = f"r{time.monotonic_ns()}-{i}"
        index[request_id] = i
        engine.add_request(request_id, prompt, sampling)
    steps = 0
    while engine.has_unfinished():
        result = engine.step()
        steps += 1
        now = time.perf_counter()
        for output in result.outputs:
            if output.new_token_ids:
                first.setdefault(output.request_id, now)
                last[output.request_id] = now
                tokens[output.request_id] = tokens.get(output.request_id, 0) + len(output.new_token_ids)
                ids.setdefault(index[output.request_id], []).extend(output.new_token_ids)
    rates = [tokens[r] / (last[r] - started) for r in tokens]
    gaps = [(last[r] - first[r]) / (tokens[r] - 1) for r in tokens if tokens[r] > 1]
    return ids, statistics.fmean(rates), 1000 * statistics.fmean(gaps), steps


def measure(built: BuiltEngine, args: argparse.Namespace, speculative: bool) -> list[Run]:
    """Each batch twice: the first run meets its shapes for the first time (on a fresh machine,
    compiling kernels: cold); the second is the steady figure (warm). The engine's drafting backoff
    carries over from run to run, as it does in a server."""
    runs = []
    for batch_size in args.batch_sizes:
        asked = prompts(built, args.workload, batch_size, batch_size)
        _, first_rate, _, _ = run_batch(built, asked, args.max_tokens, args.workload)
        drafts_before = built.engine.stats().drafts
        outputs, rate, itl_ms, steps = run_batch(built, asked, args.max_tokens, args.workload)
        drafts = built.engine.stats().drafts
        ordered = [outputs[i] for i in range(batch_size)]
        runs.append(
            Run(
                speculative,
                batch_size,
                sum(map(len, ordered)),
                ordered,
                rate,
                first_rate,
                itl_ms,
                steps,
                drafts.num_draft_tokens - drafts_before.num_draft_tokens,
                drafts.num_accepted_tokens - drafts_before.num_accepted_tokens,
            )
        )
    return runs


def speculative_config(args: argparse.Namespace) -> SpeculativeConfig:
    k = args.num_speculative_tokens
    if args.method == NGRAM:
        return SpeculativeConfig(method=NGRAM, num_speculative_tokens=k)
    if (args.draft_model is None) == (args.draft_layers is None):
        raise SystemExit("--method draft_model takes one of --draft-model and --draft-layers")
    draft = args.draft_model
    if draft is None:
        source = materialize(resolve_model_source(args.model, args.load_format)).directory
        draft = str(write_truncated_copy(source, args.draft_layers, Path(tempfile.mkdtemp(prefix="draft-"))))
    return SpeculativeConfig(method=DRAFT_MODEL, model=draft, num_speculative_tokens=k)


def drafts_description(args: argparse.Namespace) -> str:
    if args.method == NGRAM:
        return "prompt lookup"
    if args.draft_layers is not None:
        return f"draft model: the model's first {args.draft_layers} layers"
    same = Path(args.draft_model).resolve() == Path(args.model).resolve()
    if same and args.load_format == "dummy":
        return "draft model: the model itself (same random weights: the mechanism's ceiling, everything accepted)"
    return f"draft model: {args.draft_model}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--load-format", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workload", choices=("rewrite", "random"), default="rewrite")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--method", choices=(NGRAM, DRAFT_MODEL), default=NGRAM)
    parser.add_argument("--draft-model", default=None, help="draft_model: the draft's directory")
    parser.add_argument("--draft-layers", type=int, default=None, help="draft_model: the model's first N layers")
    parser.add_argument("--num-speculative-tokens", type=int, default=4)
    parser.add_argument("--kv-cache-memory", type=int, default=None, help="bytes")
    parser.add_argument("--name", default=None)
    args = parser.parse_args()

    base = {"model": args.model, "load_format": args.load_format, "device": args.device}
    base["kv_cache_memory"] = args.kv_cache_memory
    spec = speculative_config(args)
    all_runs, info = [], None
    for speculative in (False, True):  # one engine at a time: a large model does not fit twice
        built = build_engine(EngineConfig(**base, speculative=spec if speculative else SpeculativeConfig()))
        freeze_long_lived_objects()
        info = built.info
        all_runs.append(measure(built, args, speculative))
        del built
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    rows, payload_rows = [], []
    for plain, drafted in zip(*all_runs, strict=True):
        speedup = drafted.per_request_tokens_per_s / plain.per_request_tokens_per_s
        acceptance = f"{100 * drafted.acceptance:.0f} %" if drafted.acceptance is not None else "-"
        rows.append(
            [
                plain.batch_size,
                f"{plain.per_request_tokens_per_s:,.1f}",
                f"{drafted.per_request_tokens_per_s:,.1f}",
                f"{speedup:.2f}x",
                f"{plain.first_run_tokens_per_s:,.1f} / {drafted.first_run_tokens_per_s:,.1f}",
                f"{plain.itl_ms:.2f} / {drafted.itl_ms:.2f}",
                acceptance,
                f"{plain.steps} / {drafted.steps}",
                "yes" if plain.outputs == drafted.outputs else "no",
            ]
        )
        payload_rows.append({"plain": asdict(plain), "speculative": asdict(drafted), "speedup": speedup})
    description = (
        f"{info.served_model_name} ({args.load_format} weights) on {info.device}, {info.dtype}; greedy, "
        f"max_tokens {args.max_tokens}; workload {args.workload}; {drafts_description(args)}, "
        f"k = {args.num_speculative_tokens}"
    )
    table = markdown_table(
        [
            "batch",
            "per-request tok/s, no drafts",
            "with drafts",
            "speed-up",
            "first run tok/s (no drafts / drafts)",
            "ITL ms (no drafts / drafts)",
            "draft acceptance",
            "steps (no drafts / drafts)",
            "same tokens",
        ],
        rows,
    )
    print(description)
    print(table)
    device = info.device.split(":")[0]
    name = args.name or f"speculative_{info.served_model_name.lower()}_{device}_{args.workload}"
    if args.method == DRAFT_MODEL and not args.name:
        name += "_draft-model"
    payload = {"benchmark": "speculative decoding", "settings": vars(args), "description": description}
    payload["model"] = asdict(info)
    payload["runs"] = payload_rows
    note = (
        "Per-request figures are the second run of each batch (warm); the first run, the first time the "
        "engine met those shapes, is shown apart (cold)."
    )
    markdown = f"# Speculative decoding\n\n{description}.\n\n{table}\n\n{note}\n"
    print("wrote", *write_report(name, payload, markdown))


if __name__ == "__main__":
    main()
