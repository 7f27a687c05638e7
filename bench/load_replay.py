"""Replaying a Mooncake-style trace (bench/traces/) against the router, each request as its tenant.

Why not guidellm's own replay (`--profile replay` with `--data kind=mooncake`)? Its trace formats
carry only timestamp, lengths and hash ids into the requests, and its OpenAI HTTP backend binds one
API key and one set of extra headers to a whole run, so a request cannot be sent as its own tenant
(`Authorization: Bearer <key>`) in its own QoS class (`x-shoal-qos`). Splitting a trace into one
guidellm run per tenant x class would not do either: each run is a process that starts seconds
apart from the others and replays from its own first row, so the tenants' requests would no longer
meet on one timeline, which is what a multi-tenant trace is for.

So this module keeps guidellm's parts and schedules them itself:

- prompts come from guidellm's Mooncake format (MooncakeTraceFormat.create_prompt): one synthetic
  token block of the embedded model's tokenizer per hash id, shared wherever the trace shares the
  id, from a Faker seeded per run (a new seed each run: no prefix-cache hits on an earlier run);
- requests go through guidellm's OpenAIHTTPBackend (httpx, streamed chat completions, its SSE
  parsing, timings and GenerativeRequestStats: the same TTFT and ITL definitions as the guidellm
  runs), one backend per tenant x QoS class, holding that tenant's key and that class's header;
- arrivals are open loop: request i starts at t0 + time_scale x (its timestamp - the first's),
  whatever happened to the ones before it. A refusal (429 or 503) is recorded with its Retry-After
  and not retried, so the report shows what the router did with the load as offered.
"""

import asyncio
import json
import time
from pathlib import Path

import httpx
from faker import Faker
from guidellm.backends.openai.http import OpenAIHTTPBackend
from guidellm.data.deserializers.trace_mooncake import MooncakeTraceFormat
from guidellm.schemas import GenerationRequest, RequestInfo, UsageMetrics
from guidellm.schemas.backends import OpenAIHTTPBackendArgs
from guidellm.schemas.data.deserializers import MooncakeTraceFormatArgs

from bench.load_guidellm import outcome_from_stats
from bench.load_report import Outcome, Run
from bench.traces.make_traces import BLOCK_TOKENS
from shoal.route_contract import QOS_CLASSES
from shoal.router.identity import QOS_HEADER

TRACE_FIELDS = ("timestamp", "input_length", "output_length", "hash_ids", "tenant", "qos")


def read_trace(path: Path) -> list[dict]:
    """The trace's rows in arrival order; ValueError naming the line and field for a bad one."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        missing = [name for name in TRACE_FIELDS if name not in row]
        if missing:
            raise ValueError(f"{path}:{number}: missing {', '.join(missing)}")
        if row["qos"] not in QOS_CLASSES:
            raise ValueError(f"{path}:{number}: qos must be one of {', '.join(QOS_CLASSES)}, got {row['qos']!r}")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no requests")
    return sorted(rows, key=lambda r: r["timestamp"])


def synthesize_prompts(path: Path, rows: list[dict], tokenizer, seed: int) -> list[str]:
    """One prompt per row, as guidellm's Mooncake format builds them (shared hash ids, shared text)."""
    args = MooncakeTraceFormatArgs(source={"kind": "json_file", "path": str(path)}, hash_id_block_size=BLOCK_TOKENS)
    trace_format = MooncakeTraceFormat(args, dataset=None)
    faker = Faker()
    faker.seed_instance(seed)
    prompts = []
    for row in rows:
        trace_format.validate_row(row)
        prompts.append(trace_format.create_prompt(row, tokenizer, faker))
    return prompts


async def replay(
    url: str,
    model: str,
    rows: list[dict],
    prompts: list[str],
    keys: dict[str, str],
    time_scale: float,
    request_timeout_s: float,
) -> tuple[list[Outcome], float]:
    """Sends every row at its scaled time; returns one Outcome per row (in row order) and the
    seconds from the first arrival to the last answer."""
    unknown = sorted({r["tenant"] for r in rows} - keys.keys())
    if unknown:
        raise ValueError(f"no API key for tenant(s) {', '.join(unknown)}: pass --tenant-key NAME=KEY")
    backends = {
        (tenant, qos): OpenAIHTTPBackend(
            OpenAIHTTPBackendArgs(
                target=url,
                model=model,
                api_key=keys[tenant],
                timeout=request_timeout_s,
                extras={"headers": {QOS_HEADER: qos}},
            )
        )
        for tenant, qos in {(r["tenant"], r["qos"]) for r in rows}
    }
    for backend in backends.values():
        await backend.process_startup()
    try:
        await next(iter(backends.values())).validate()  # GET /health: the router is there
        first = rows[0]["timestamp"] / 1000
        t0 = time.monotonic() + 0.2
        tasks = [
            _send_at(t0 + time_scale * (row["timestamp"] / 1000 - first), backends[(row["tenant"], row["qos"])], row, p)
            for row, p in zip(rows, prompts, strict=True)
        ]
        outcomes = await asyncio.gather(*tasks)
        return list(outcomes), time.monotonic() - t0
    finally:
        for backend in backends.values():
            await backend.process_shutdown()


async def _send_at(at: float, backend: OpenAIHTTPBackend, row: dict, prompt: str) -> Outcome:
    await asyncio.sleep(max(0.0, at - time.monotonic()))
    request = GenerationRequest(
        columns={"text_column": [prompt]},
        input_metrics=UsageMetrics(text_tokens=row["input_length"]),
        output_metrics=UsageMetrics(text_tokens=row["output_length"]),
    )
    info = RequestInfo(request_id=request.request_id)
    info.timings.resolve_start = time.time()
    response, status, retry_after = None, "200", None
    try:
        async for answer, _ in backend.resolve(request, info):  # it updates `info` in place
            response = answer  # the last one is the whole answer
        info.status = "completed"
    except httpx.HTTPStatusError as error:
        status, retry_after = str(error.response.status_code), error.response.headers.get("retry-after")
    except httpx.TimeoutException:
        status = "timeout"
    except httpx.HTTPError:
        status = "connection_error"
    except ValueError as error:  # guidellm's parser met `data: {"error": ...}` after the 200 was sent
        if "Streaming response returned an error" not in str(error):
            raise
        status = "stream_error"
    info.timings.resolve_end = time.time()
    if status != "200" or response is None:
        return Outcome(
            row["tenant"],
            row["qos"],
            status,
            e2e_s=info.timings.resolve_end - info.timings.resolve_start,
            retry_after_s=_seconds(retry_after),
        )
    stats = response.compile_stats(request, info, prefer_response=True)
    return outcome_from_stats(stats.model_dump(mode="json"), row["tenant"], row["qos"], status)


def _seconds(retry_after: str | None) -> float | None:
    """Retry-After in seconds (the router sends seconds; an HTTP date counts as present, 0 s)."""
    if retry_after is None:
        return None
    try:
        return float(retry_after)
    except ValueError:
        return 0.0


def replay_run(
    path: Path,
    url: str,
    model: str,
    keys: dict[str, str],
    tokenizer,
    seed: int,
    time_scale: float,
    request_timeout_s: float,
) -> Run:
    rows = read_trace(path)
    prompts = synthesize_prompts(path, rows, tokenizer, seed)
    outcomes, elapsed = asyncio.run(replay(url, model, rows, prompts, keys, time_scale, request_timeout_s))
    span_s = time_scale * (rows[-1]["timestamp"] - rows[0]["timestamp"]) / 1000
    return Run(
        name=f"replay/{path.stem}",
        profile="replay",
        open_loop=True,
        load=len(rows) / span_s if span_s > 0 else float(len(rows)),
        duration_s=elapsed,
        outcomes=outcomes,
        details={"trace": {"path": path.name, "requests": len(rows), "time_scale": time_scale, "data_seed": seed}},
    )
