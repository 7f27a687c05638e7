"""What constrained decoding costs: the engine's output tokens/s with a JSON schema against the same
batch unconstrained (the anchor, measured in the same run), at each batch size, and the time a step
spends filling the allowed-token masks (xgrammar, on the host).

Each batch is N copies of one chat prompt, sampled with temperature 0 and the same max_tokens; a
constrained request ends when its JSON is complete, so both sides report the tokens they generated
and the steps they took. With random weights (--load-format dummy) the JSON's strings are random
text that runs to max_tokens: that measures the mask's cost per step at full length, which is what
it is for; the content means nothing.

    python bench/structured.py                                         # CPU, embedded SmolLM2, batch 1 and 16
    python bench/structured.py --model DIR --load-format dummy --batch-sizes 1 64 --max-tokens 256   # GPU
"""

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.report import markdown_table, write_report  # noqa: E402
from shoal.runtime.build import BuiltEngine, build_engine, freeze_long_lived_objects  # noqa: E402
from shoal.runtime.config import EngineConfig  # noqa: E402
from shoal.runtime.sampling.params import SamplingParams  # noqa: E402
from shoal.runtime.structured.spec import JSON_SCHEMA, StructuredOutput  # noqa: E402

# Open-ended enough to run long: a list of records with free-text fields, more of them than fit in
# max_tokens (random weights would otherwise close the list at once, and time nothing).
SCHEMA = {
    "type": "object",
    "properties": {
        "people": {
            "type": "array",
            "minItems": 100,
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "age": {"type": "integer", "minimum": 0, "maximum": 120},
                    "city": {"type": "string"},
                    "hobbies": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["name", "age", "city"],
            },
        }
    },
    "required": ["people"],
}
PROMPT = "List some people as JSON, with their name, age, city and hobbies."


@dataclass(frozen=True)
class Run:
    constrained: bool
    batch_size: int
    elapsed_s: float
    output_tokens: int
    steps: int
    mask_ms_mean: float | None  # per step with constrained rows
    mask_ms_p99: float | None
    compile_ms: float | None

    @property
    def output_tokens_per_s(self) -> float:
        return self.output_tokens / self.elapsed_s


def run_batch(built: BuiltEngine, prompt: list[int], batch_size: int, max_tokens: int, constrained: bool) -> Run:
    engine = built.engine
    structured = StructuredOutput(JSON_SCHEMA, json.dumps(SCHEMA)) if constrained else None
    sampling = SamplingParams(temperature=0, max_tokens=max_tokens, structured=structured)
    compile_s = None
    started = time.perf_counter()
    for i in range(batch_size):
        grammar = None
        if constrained:
            grammar, seconds = built.grammars.compile(structured)  # the first compiles, the rest hit the cache
            compile_s = seconds if compile_s is None else compile_s
        engine.add_request(f"{constrained}-{batch_size}-{i}", prompt, sampling, grammar=grammar)
    output_tokens, steps, masks = 0, 0, []
    while engine.has_unfinished():
        result = engine.step()
        steps += 1
        output_tokens += sum(len(o.new_token_ids) for o in result.outputs)
        if result.mask_s is not None:
            masks.append(result.mask_s * 1000)
    elapsed = time.perf_counter() - started
    return Run(
        constrained=constrained,
        batch_size=batch_size,
        elapsed_s=elapsed,
        output_tokens=output_tokens,
        steps=steps,
        mask_ms_mean=statistics.fmean(masks) if masks else None,
        mask_ms_p99=sorted(masks)[int(0.99 * (len(masks) - 1))] if masks else None,
        compile_ms=compile_s * 1000 if compile_s is not None else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--load-format", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each; the fastest is reported")
    parser.add_argument("--kv-cache-memory", type=int, default=None, help="bytes")
    parser.add_argument("--name", default=None)
    args = parser.parse_args()

    config = EngineConfig(
        model=args.model, load_format=args.load_format, device=args.device, kv_cache_memory=args.kv_cache_memory
    )
    built = build_engine(config)
    freeze_long_lived_objects()
    if built.grammars is None:
        raise SystemExit("the model has no tokenizer: nothing to compile a grammar for")
    prompt = built.tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}], add_generation_prompt=True, tokenize=True, return_dict=False
    )
    for constrained in (False, True):  # warm up: kernels, the prefix cache for the prompt, the schema's grammar
        run_batch(built, prompt, 1, 4, constrained)
    runs = []
    for batch_size in args.batch_sizes:
        for constrained in (False, True):
            tries = [run_batch(built, prompt, batch_size, args.max_tokens, constrained) for _ in range(args.repeats)]
            runs.append(max(tries, key=lambda r: r.output_tokens_per_s))
    rows, payload_rows = [], []
    for plain, constrained in zip(runs[::2], runs[1::2], strict=True):
        slowdown = 1 - constrained.output_tokens_per_s / plain.output_tokens_per_s
        rows.append(
            [
                plain.batch_size,
                f"{plain.output_tokens_per_s:,.1f}",
                f"{constrained.output_tokens_per_s:,.1f}",
                f"{100 * slowdown:+.1f} %",
                f"{plain.output_tokens} / {constrained.output_tokens}",
                f"{plain.steps} / {constrained.steps}",
                f"{constrained.mask_ms_mean:.3f} / {constrained.mask_ms_p99:.3f}",
            ]
        )
        payload_rows.append({"plain": asdict(plain), "constrained": asdict(constrained), "slowdown": slowdown})
    info = built.info
    description = (
        f"{info.served_model_name} ({args.load_format} weights) on {info.device}, {info.dtype}; greedy, "
        f"max_tokens {args.max_tokens}; JSON schema of bench/structured.py; best of {args.repeats}"
    )
    table = markdown_table(
        [
            "batch",
            "unconstrained tok/s",
            "JSON schema tok/s",
            "slower by",
            "tokens (plain / schema)",
            "steps (plain / schema)",
            "mask ms per step mean / p99",
        ],
        rows,
    )
    print(description)
    print(table)
    name = args.name or f"structured_{info.served_model_name.lower()}_{info.device.split(':')[0]}"
    payload = {"benchmark": "structured outputs", "settings": vars(args), "description": description}
    payload["model"] = asdict(info)
    payload["runs"] = payload_rows
    markdown = f"# Structured outputs: what a JSON schema costs\n\n{description}.\n\n{table}\n"
    paths = write_report(name, payload, markdown)
    print("wrote", *paths)


if __name__ == "__main__":
    main()
