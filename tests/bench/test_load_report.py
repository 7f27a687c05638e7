"""The load suite's pure parts: summaries, guidellm's report read back, traces read and kept current."""

import json

import numpy as np
import pytest

from bench.load_guidellm import _error_status, run_from_benchmark
from bench.load_replay import read_trace
from bench.load_report import Outcome, Run, Slo, percentile, summarize, summarize_run
from bench.traces.make_traces import HERE, TRACES, write_traces

SLO = Slo(ttft_ms=1000, itl_ms=100)


def ok(ttft_ms: float, itl_ms: float | None = 50, tenant: str = "chat", qos: str = "realtime") -> Outcome:
    return Outcome(tenant, qos, "200", ttft_ms=ttft_ms, itl_ms=itl_ms, e2e_s=ttft_ms / 1000 + 1, output_tokens=10)


def test_percentiles_match_numpy():
    values = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]
    for q in (50, 95, 99):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))
    assert percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0


def test_goodput_counts_successes_within_both_objectives_over_finished_requests():
    outcomes = [
        ok(200),
        ok(900, itl_ms=None),  # one output token: no ITL, judged on TTFT alone
        ok(1500),  # TTFT over
        ok(300, itl_ms=150),  # ITL over
        Outcome("chat", "realtime", "429", e2e_s=0.01, retry_after_s=2),
        Outcome("chat", "realtime", "503", e2e_s=0.02),
        Outcome("chat", "realtime", "incomplete"),
    ]
    summary = summarize(outcomes, duration_s=2.0, slo=SLO)
    assert summary["requests"] == 7 and summary["finished"] == 6 and summary["succeeded"] == 4
    assert summary["status_counts"] == {"200": 4, "429": 1, "503": 1, "incomplete": 1}
    assert summary["goodput"] == {
        "requests": 2,
        "per_s": 1.0,
        "share_of_finished": pytest.approx(2 / 6),
        "share_of_sent": pytest.approx(2 / 7),
    }
    assert summary["refusals"] == {
        "requests": 2,
        "with_retry_after": 1,
        "p50_s": pytest.approx(0.015),
        "p99_s": pytest.approx(0.0199),
        "slowest_s": 0.02,
    }
    assert summary["latency"]["ttft_ms"]["p50"] == pytest.approx(600)  # over the four successes only
    assert summary["output_tokens_per_s"] == 20


def test_a_run_is_broken_down_by_tenant_and_qos_class():
    run = Run(
        "replay/t", "replay", True, 2.0, 10.0, [ok(100), ok(200, qos="batch"), ok(300, tenant="bulk", qos="batch")]
    )
    summary = summarize_run(run, SLO)
    groups = {(g["tenant"], g["qos"]): g["requests"] for g in summary["by_tenant_qos"]}
    assert groups == {("bulk", "batch"): 1, ("chat", "batch"): 1, ("chat", "realtime"): 1}
    assert summary["load_unit"] == "req/s" and summary["offered_per_s"] == pytest.approx(0.3)


def test_guidellm_errors_keep_their_http_status():
    message = (
        "HTTPStatusError(\"Client error '429 Too Many Requests' for url 'http://127.0.0.1:8000/v1/chat/completions'"
    )
    assert _error_status(message) == "429"
    assert _error_status("HTTPStatusError(\"Server error '503 Service Unavailable' for url 'x'") == "503"
    assert _error_status("ReadTimeout('')") == "timeout"
    assert _error_status("ValueError('Streaming response returned an error: boom')") == "stream_error"
    assert _error_status("ConnectError('refused')") == "connection_error"


def test_a_guidellm_benchmark_becomes_one_run():
    request = {"time_to_first_token_ms": 100.0, "inter_token_latency_ms": 20.0, "request_latency": 0.5}
    error = {"info": {"error": "HTTPStatusError(\"Client error '429 Too Many' for url 'u'", "timings": {}}}
    benchmark = {
        "config": {"strategy": {"type_": "poisson", "rate": 1.5}},
        "requests": {"successful": [request], "errored": [error], "incomplete": [{}]},
        "metrics": {"request_totals": {"successful": 1, "errored": 1, "incomplete": 1, "total": 3}},
        "duration": 6.0,
    }
    run = run_from_benchmark(benchmark, "sweep", "chat", "batch", seed=7)
    assert (run.name, run.open_loop, run.load) == ("sweep/poisson@1.5", True, 1.5)
    assert [o.status for o in run.outcomes] == ["200", "429", "incomplete"]
    assert {o.qos for o in run.outcomes} == {"batch"} and run.details["guidellm"]["data_seed"] == 7


def test_bad_trace_rows_are_named(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"timestamp": 0, "input_length": 16, "output_length": 4, "hash_ids": [0]}) + "\n")
    with pytest.raises(ValueError, match="t.jsonl:1: missing tenant, qos"):
        read_trace(path)
    row = {"timestamp": 0, "input_length": 16, "output_length": 4, "hash_ids": [0], "tenant": "a", "qos": "gold"}
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(ValueError, match="qos must be one of"):
        read_trace(path)


def test_the_traces_in_the_repo_are_what_make_traces_writes(tmp_path):
    for path in write_traces(tmp_path):
        assert path.read_text() == (HERE / path.name).read_text(), f"run bench/traces/make_traces.py ({path.name})"
    assert {p.stem for p in tmp_path.iterdir()} == set(TRACES)
    for name in TRACES:
        rows = read_trace(HERE / f"{name}.jsonl")
        assert {r["qos"] for r in rows} == {"realtime", "batch"} and len({r["tenant"] for r in rows}) == 3
