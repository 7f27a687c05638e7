"""The load suite's synthetic profiles, run by guidellm's CLI (`guidellm run --scenario FILE`, started
as `python -m bench.load_guidellm run ...` to work around two bugs in guidellm 0.8.1's Poisson
arrivals, see below) and read back from its JSON report.

One guidellm run per profile: `concurrent` (a fixed number of streams, each sending back to back),
`poisson` (open-loop arrivals at set rates) and `sweep` (synchronous, then throughput, then constant
rates between the two it measured). Prompts are synthetic text of the embedded model's tokenizer
(a local directory: nothing is fetched), with a data seed of its own each run, so the runtime's
prefix cache never serves a repeat of an earlier run. Every request carries one tenant's API key
and the QoS header (guidellm binds both to the whole run). Each guidellm benchmark (one strategy)
becomes one Run; every request it made, one Outcome.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from bench.load_report import INCOMPLETE, Outcome, Run
from shoal.router.identity import QOS_HEADER

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ("concurrent", "poisson", "sweep")
_STATUS = re.compile(r"'(\d{3}) [^']*' for url")  # httpx's HTTPStatusError message


def scenario(
    profile: str,
    *,
    target: str,
    model: str,
    api_key: str,
    qos: str,
    tokenizer: Path,
    seed: int,
    seconds: float,
    prompt_tokens: int,
    output_tokens: int,
    streams: list[int],
    rates: list[float],
    sweep_size: int,
    max_concurrency: int,
    request_timeout_s: float,
    output: Path,
) -> dict:
    """guidellm's scenario file (BenchmarkScenario) for one profile."""
    profiles = {
        "concurrent": {"kind": "concurrent", "streams": streams},
        "poisson": {"kind": "poisson", "rate": rates, "max_concurrency": max_concurrency},
        "sweep": {
            "kind": "sweep",
            "sweep_size": sweep_size,
            "strategy_type": "constant",
            "max_concurrency": max_concurrency,
        },
    }
    return {
        "spec": {
            "backend": {
                "kind": "openai_http",
                "target": target,
                "model": model,
                "api_key": api_key,
                "timeout": request_timeout_s,
                "extras": {"headers": {QOS_HEADER: qos}},
            },
            "profile": profiles[profile],
            "constraints": [{"kind": "max_duration", "seconds": seconds}],
            "tokenizer": {"kind": "huggingface_auto", "model": str(tokenizer)},
            "data": [{"kind": "synthetic_text", "prompt_tokens": prompt_tokens, "output_tokens": output_tokens}],
            "seed": {"kind": "static", "value": seed},
            "outputs": [{"kind": "json", "path": str(output)}],
        }
    }


def run_guidellm(spec: dict, workdir: Path, name: str) -> dict:
    """Runs `guidellm run` on the scenario; returns its JSON report. Its console goes to <name>.log."""
    scenario_path, log_path = workdir / f"{name}.scenario.json", workdir / f"{name}.log"
    scenario_path.write_text(json.dumps(spec, indent=2))
    command = [
        sys.executable,
        "-m",
        "bench.load_guidellm",
        "run",
        "--scenario",
        str(scenario_path),
        "--disable-progress",
    ]
    with open(log_path, "w") as log:
        result = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=_guidellm_env())
    if result.returncode != 0:
        tail = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()][-30:]
        last = tail[-1].strip() if tail else ""
        raise RuntimeError(f"guidellm exited with {result.returncode}: {last} (log {log_path})\n" + "\n".join(tail))
    return json.loads(Path(spec["spec"]["outputs"][0]["path"]).read_text())


def _guidellm_env() -> dict:
    """Offline (the tokenizer is a local directory), and one worker process: guidellm 0.8.1 seeds each
    worker's Poisson generator alike, so with N workers arrivals come in runs of N equal gaps (not a
    Poisson process, and far off the rate over a short benchmark). One asyncio worker holds these rates."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GUIDELLM__MAX_WORKER_PROCESSES": "1"}


def _start_poisson_offset_first() -> None:
    """guidellm 0.8.1's AsyncPoissonStrategy.init_processes_start wakes the workers (the base class sets
    their start event) before it sets the shared arrival offset to the start time, so a worker that
    wakes first schedules from the offset's initial -1.0: targets in 1970, sent at once, up to the
    concurrency cap (16 requests in a burst at t=0 in our runs). Set the offset first, then wake them.
    Runs in the main process, where guidellm calls it."""
    from guidellm.scheduler.strategies import AsyncPoissonStrategy, ThroughputStrategy

    def init_processes_start(self, start_time: float) -> None:
        with self._offset.get_lock():
            self._offset.value = start_time
        ThroughputStrategy.init_processes_start(self, start_time)

    AsyncPoissonStrategy.init_processes_start = init_processes_start


if __name__ == "__main__":  # `python -m bench.load_guidellm run ...`: guidellm's CLI with the fix above
    from guidellm.cli import cli

    _start_poisson_offset_first()
    cli()


def runs_from_report(report: dict, profile: str, tenant: str, qos: str, seed: int) -> list[Run]:
    return [run_from_benchmark(b, profile, tenant, qos, seed) for b in report["benchmarks"]]


def run_from_benchmark(benchmark: dict, profile: str, tenant: str, qos: str, seed: int) -> Run:
    strategy = benchmark["config"]["strategy"]
    kind = strategy["type_"]
    open_loop = kind in ("constant", "poisson")
    if open_loop:
        load = strategy["rate"]
    elif kind == "concurrent":
        load = strategy["streams"]
    elif kind == "throughput":
        load = strategy["max_concurrency"]
    else:  # synchronous
        load = 1
    name = f"{kind}@{load:g}" if kind != "synchronous" else kind
    if profile == "sweep":
        name = f"sweep/{name}"
    requests = benchmark["requests"]
    outcomes = [outcome_from_stats(r, tenant, qos, "200") for r in requests["successful"]]
    outcomes += [outcome_from_stats(r, tenant, qos, _error_status(r["info"]["error"])) for r in requests["errored"]]
    outcomes += [outcome_from_stats(r, tenant, qos, INCOMPLETE) for r in requests["incomplete"]]
    metrics = benchmark["metrics"]
    return Run(
        name=name,
        profile=profile,
        open_loop=open_loop,
        load=float(load),
        duration_s=benchmark["duration"],
        outcomes=outcomes,
        details={
            "guidellm": {
                "strategy": strategy,
                "request_totals": metrics["request_totals"],
                "data_seed": seed,
            }
        },
    )


def outcome_from_stats(request: dict, tenant: str, qos: str, status: str) -> Outcome:
    """An Outcome from guidellm's GenerativeRequestStats as JSON (its report's, or the replay's own)."""
    latency = request.get("request_latency")
    if latency is None and status not in ("200", INCOMPLETE):  # an error: how long it took to come
        timings = request["info"]["timings"]
        start, end = timings.get("request_start") or timings.get("resolve_start"), timings.get("resolve_end")
        latency = end - start if start is not None and end is not None else None
    return Outcome(
        tenant=tenant,
        qos=qos,
        status=status,
        ttft_ms=request.get("time_to_first_token_ms"),
        itl_ms=request.get("inter_token_latency_ms"),
        e2e_s=latency,
        prompt_tokens=request.get("prompt_tokens"),
        output_tokens=request.get("output_tokens"),
    )


def _error_status(error: str | None) -> str:
    """The HTTP status in guidellm's recorded error (it keeps the exception's repr, not the response)."""
    if error and (match := _STATUS.search(error)):
        return match.group(1)
    if error and "Timeout" in error:
        return "timeout"
    if error and "Streaming response returned an error" in error:
        return "stream_error"
    return "connection_error"
