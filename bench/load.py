"""Load and overload: the router in front of a runtime on the embedded model, driven by guidellm.

By default this starts `shoal dev` (a runtime on the embedded SmolLM2-135M-Instruct and the router)
with the suite's own config (bench/load_system.py: tenants chat, agent and bulk, a small QoS gate);
with --target URL it drives a router that is already up instead (name each tenant's key with
--tenant-key, and its admin port, where its /metrics is, with --admin-target). Then:

- guidellm's profiles (bench/load_guidellm.py), as tenant --tenant in class --qos, on synthetic
  prompts of the model's tokenizer with a new data seed each run: `concurrent` (--streams),
  `poisson` (--rates) and `sweep` (--sweep-size rates from synchronous to throughput), each
  benchmark --seconds long;
- trace replay (bench/load_replay.py): each trace in bench/traces/ (or given by path), its requests
  sent at their timestamps x --time-scale, each with its tenant's key and its QoS class;

and reports, per run and per tenant x QoS class within it (bench/load_report.py): the status mix
(429s counted apart from 5xx), goodput (successful requests within --slo-ttft-ms and --slo-itl-ms),
TTFT, ITL and end-to-end p50/p95/p99; plots latency against offered load (bench/load_plots.py);
and gives what the router itself counted meanwhile (bench/load_router_metrics.py: shed reasons,
tenant limits, queue waits, answers by tenant/class/status).

    python bench/load.py                                        # everything, about 3 minutes on 2 cores
    python bench/load.py --seconds 6 --sweep-size 3 --time-scale 0.75   # bench/results/load_*_cpu: ~90 s of load
    python bench/load.py --profiles sweep --sweep-size 3 --max-concurrency 32 --seconds 5 --traces \
        --name load_smollm2-135m-instruct_cpu_retry_storm     # guidellm retrying 429s at once
    python bench/load.py --profiles poisson --rates 1.25 2.5 5 12.5 25 --max-concurrency 64 --seconds 10 \
        --traces overload_burst --name load_smollm2-135m-instruct_cpu_overload   # 0.5x to 10x capacity
    python bench/load.py --profiles concurrent --streams 1 2 4 --traces
    python bench/load.py --profiles --traces overload_burst --time-scale 0.5
    python bench/load.py --target http://127.0.0.1:8000 --admin-target http://127.0.0.1:8002 \\
        --tenant chat --tenant-key chat=sk-shoal-local \\
        --traces mixed_tenants --tenant-key agent=sk-... --tenant-key bulk=sk-...

Writes bench/results/<name>.{json,md,png}; guidellm's own JSON reports and logs stay in --workdir
(a temporary directory unless given).
"""

import argparse
import dataclasses
import json
import os
import random
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import load_router_metrics as router_metrics  # noqa: E402
from bench.load_guidellm import PROFILES, run_guidellm, runs_from_report, scenario  # noqa: E402
from bench.load_plots import write_plot  # noqa: E402
from bench.load_replay import replay_run  # noqa: E402
from bench.load_report import Slo, markdown_runs, summarize_run  # noqa: E402
from bench.load_system import QOS, TENANTS, LoadSystem, suite_keys, tokenizer_dir  # noqa: E402
from bench.report import RESULTS_DIR, write_report  # noqa: E402
from bench.traces.make_traces import TRACES  # noqa: E402
from shoal.constants import ROUTER_ADMIN_PORT  # noqa: E402
from shoal.embedded_model import EMBEDDED_MODEL_NAME  # noqa: E402

TRACES_DIR = ROOT / "bench" / "traces"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", help="a router already up (base URL); default: start `shoal dev` here")
    parser.add_argument(
        "--admin-target",
        default=f"http://127.0.0.1:{ROUTER_ADMIN_PORT}",
        help="with --target: that router's admin port (base URL), where its /metrics is (default %(default)s)",
    )
    parser.add_argument("--model", default=EMBEDDED_MODEL_NAME)
    parser.add_argument(
        "--tenant-key", action="append", default=[], metavar="NAME=KEY", help="a tenant's API key (repeatable)"
    )
    parser.add_argument("--tenant", default="chat", help="the tenant guidellm's profiles send as")
    parser.add_argument("--qos", default="realtime", choices=("realtime", "batch"), help="their QoS class")
    parser.add_argument("--profiles", nargs="*", default=list(PROFILES), choices=PROFILES)
    parser.add_argument("--seconds", type=float, default=6.0, help="per guidellm benchmark")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4], help="concurrent profile")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.5, 3.0], help="poisson profile, req/s")
    parser.add_argument("--sweep-size", type=int, default=4, help="benchmarks in the sweep (>= 3)")
    # Beyond the suite's pool (8 in flight, 16 queued) guidellm's closed-loop throughput benchmark retries
    # each 429 at once: hundreds of refusals a second that, on 2 shared cores, starve the admitted requests.
    parser.add_argument("--max-concurrency", type=int, default=16, help="cap for poisson and sweep")
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--output-tokens", type=int, default=16)
    parser.add_argument("--traces", nargs="*", default=list(TRACES), help="names in bench/traces/ or paths")
    parser.add_argument("--time-scale", type=float, default=1.0, help="replay seconds per trace second")
    parser.add_argument("--slo-ttft-ms", type=float, default=2000.0)
    parser.add_argument("--slo-itl-ms", type=float, default=250.0)
    parser.add_argument("--request-timeout", type=float, default=120.0, help="seconds; a hang shows as timeout")
    parser.add_argument("--seed", type=int, help="first data seed (default: a new one each run)")
    parser.add_argument("--name", help="result file name (default load_<model>_cpu)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--workdir", type=Path, help="guidellm's reports and logs (default: a temporary dir)")
    args = parser.parse_args(argv)
    if args.time_scale <= 0:
        parser.error("--time-scale must be > 0")
    if args.sweep_size < 3:
        parser.error("--sweep-size must be >= 3 (synchronous, throughput, and a rate between)")
    try:
        args.keys = dict(item.split("=", 1) for item in args.tenant_key)
    except ValueError:
        parser.error("--tenant-key takes NAME=KEY")
    args.trace_paths = [_trace_path(t) for t in args.traces]
    for path in args.trace_paths:
        if not path.is_file():
            parser.error(f"--traces: no trace {path}")
    return args


def _trace_path(trace: str) -> Path:
    path = Path(trace)
    return path if path.suffix == ".jsonl" else TRACES_DIR / f"{trace}.jsonl"


def warm_up(url: str, model: str, key: str) -> None:
    """One short request before measuring, so the first benchmark does not pay for lazy start-up work."""
    body = {"model": model, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4}
    request = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        response.read()


def run_load(
    args: argparse.Namespace, url: str, admin_url: str, keys: dict[str, str], workdir: Path, seed: int
) -> tuple[list, list[dict], list[dict]]:
    """Every guidellm profile, then every trace, against the router at `url`; returns the Runs in that
    order, the profiles guidellm failed to finish, and what the router counted during each profile
    and trace (read from its /metrics at `admin_url`)."""
    if args.tenant not in keys:
        raise SystemExit(f"no API key for tenant {args.tenant!r}: pass --tenant-key {args.tenant}=KEY")
    tokenizer = tokenizer_dir()
    warm_up(url, args.model, keys[args.tenant])
    runs, failures, counted = [], [], []
    for i, profile in enumerate(args.profiles):
        data_seed = seed + i
        spec = scenario(
            profile,
            target=url,
            model=args.model,
            api_key=keys[args.tenant],
            qos=args.qos,
            tokenizer=tokenizer,
            seed=data_seed,
            seconds=args.seconds,
            prompt_tokens=args.prompt_tokens,
            output_tokens=args.output_tokens,
            streams=args.streams,
            rates=args.rates,
            sweep_size=args.sweep_size,
            max_concurrency=args.max_concurrency,
            request_timeout_s=args.request_timeout,
            output=workdir / f"guidellm_{profile}.json",
        )
        print(f"guidellm: {profile} ...", flush=True)
        before = router_metrics.scrape(admin_url)
        try:
            report = run_guidellm(spec, workdir, f"guidellm_{profile}")
        except RuntimeError as error:  # e.g. a benchmark too short to finish any request: keep the others
            print(f"guidellm {profile} failed: {error}", flush=True)
            failures.append({"profile": profile, "error": str(error).splitlines()[0]})
            continue
        runs += runs_from_report(report, profile, args.tenant, args.qos, data_seed)
        counted.append({"phase": f"guidellm {profile}", **_counted_since(admin_url, before)})
    if args.trace_paths:
        from transformers import AutoTokenizer

        processor = AutoTokenizer.from_pretrained(str(tokenizer))
        for j, path in enumerate(args.trace_paths):
            print(f"replay: {path.name} at time scale {args.time_scale:g} ...", flush=True)
            before = router_metrics.scrape(admin_url)
            runs.append(
                replay_run(
                    path, url, args.model, keys, processor, seed + 100 + j, args.time_scale, args.request_timeout
                )
            )
            counted.append({"phase": runs[-1].name, **_counted_since(admin_url, before)})
    return runs, failures, counted


def _counted_since(admin_url: str, before: dict) -> dict:
    time.sleep(0.5)  # the router counts a request as its answer ends; let the last ones land
    return router_metrics.delta(before, router_metrics.scrape(admin_url))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31 - 200)
    with ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="shoal-load-")))
        workdir.mkdir(parents=True, exist_ok=True)
        if args.target:
            url, admin_url, keys = args.target.rstrip("/").removesuffix("/v1"), args.admin_target.rstrip("/"), args.keys
        else:
            print("starting `shoal dev` (runtime on the embedded model + router) ...", flush=True)
            system = stack.enter_context(LoadSystem(workdir / "system"))
            url, admin_url, keys = system.url, system.admin_url, {**suite_keys(), **args.keys}
        load_before = os.getloadavg()[0]
        runs, failures, counted = run_load(args, url, admin_url, keys, workdir, seed)
        load_after = os.getloadavg()[0]
    write_results(args, runs, failures, counted, seed, (load_before, load_after))
    if failures:
        raise SystemExit(f"guidellm failed: {', '.join(f['profile'] for f in failures)} (see the report)")


def write_results(
    args: argparse.Namespace,
    runs: list,
    failures: list[dict],
    counted: list[dict],
    seed: int,
    load_average: tuple[float, float],
) -> None:
    """bench/results/<name>.{json,md,png} (or --results-dir)."""
    name = args.name or f"load_{args.model.lower()}_cpu"
    slo = Slo(ttft_ms=args.slo_ttft_ms, itl_ms=args.slo_itl_ms)
    summaries = [summarize_run(run, slo) for run in runs]
    args.results_dir.mkdir(parents=True, exist_ok=True)
    plot = write_plot(summaries, args.results_dir / f"{name}.png", f"Shoal router + runtime under load: {args.model}")
    settings = {
        k: str(v) if isinstance(v, Path) else v
        for k, v in vars(args).items()
        if k not in ("keys", "tenant_key", "trace_paths", "results_dir", "workdir")
    }
    payload = {
        "benchmark": "load",
        "target": args.target or "shoal dev (started by bench/load.py)",
        "system": None
        if args.target
        else {"tenants": [dataclasses.asdict(t) | {"key": "<redacted>"} for t in TENANTS], "pool_qos": QOS},
        "settings": settings | {"first_data_seed": seed},
        "slo": {"ttft_ms": slo.ttft_ms, "itl_ms": slo.itl_ms},
        # The machine may be shared: its 1-minute load average before and after the load says how much.
        "load_average_1m": {"before": load_average[0], "after": load_average[1]},
        "plot": plot.name,
        "runs": summaries,
        "failed_profiles": failures,
        # The router's own counts per profile or trace: why it refused (shed reason, tenant limit),
        # how long requests queued in it, and what it answered by tenant/QoS class/status.
        "router_counted": counted,
    }
    markdown = (
        f"# Load and overload: {args.model} behind the router\n\n"
        f"guidellm {', '.join(args.profiles) or '(no profiles)'} as tenant `{args.tenant}` ({args.qos}), "
        f"{args.prompt_tokens} prompt / {args.output_tokens} output tokens, {args.seconds:g} s per benchmark; "
        f"trace replay of {', '.join(p.name for p in args.trace_paths) or '(none)'} at time scale "
        f"{args.time_scale:g}. Goodput: status 200 with TTFT <= {slo.ttft_ms:g} ms and ITL <= {slo.itl_ms:g} ms, "
        "as a share of the requests that finished and of all sent (`incomplete`: cut off when a benchmark's "
        "time was up). "
        "Latency percentiles over the successful requests. The machine's 1-minute load average was "
        f"{load_average[0]:.1f} before and {load_average[1]:.1f} after (its {os.cpu_count()} cores may be "
        f"shared).\n\n{markdown_runs(summaries)}\n\n![latency against offered load]({plot.name})\n\n"
        "What the router itself counted (its /metrics before and after each profile or trace; 499: the client "
        f"left first):\n\n{router_metrics.markdown_counted(counted)}\n"
    )
    for failure in failures:
        markdown += f"\nguidellm's `{failure['profile']}` profile failed: {failure['error']}\n"
    json_path, md_path = write_report(name, payload, markdown, args.results_dir)
    print(f"\n{markdown}\nwrote {json_path}, {md_path} and {plot}")


if __name__ == "__main__":
    main()
