"""The load suite, CI-sized, against a real router + runtime on the embedded model (CPU): a short
guidellm run and a short trace replay through bench/load.py, then a burst over the tenant limit and
the batch queue. Behaviour, not timings: every request is accounted for, nothing answers 5xx, the
report breaks the replay down by tenant x QoS class, and overload is refused (429 with Retry-After,
promptly) rather than left hanging."""

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from bench import load_router_metrics as router_metrics
from bench.load_replay import read_trace, replay, synthesize_prompts
from bench.load_system import QOS, LoadSystem, suite_keys, tokenizer_dir
from bench.traces.make_traces import row, write
from shoal.embedded_model import EMBEDDED_MODEL_NAME

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    with LoadSystem(tmp_path_factory.mktemp("load-system")) as system:
        yield system


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir()))


def no_server_errors(statuses: dict) -> bool:
    return not any(status.startswith("5") for status in statuses)


def test_prompts_share_text_where_the_trace_shares_hash_ids_and_change_with_the_seed(tokenizer, tmp_path):
    rows = [row(0, [0, 1, 2], 4, "chat", "realtime"), row(10, [0, 1, 3], 4, "chat", "realtime")]
    rows.append(row(20, [4, 5, 6], 4, "chat", "realtime"))
    trace = tmp_path / "shared.jsonl"
    write(trace, rows)
    first, second, other = synthesize_prompts(trace, rows, tokenizer, seed=1)
    shared = len(os.path.commonprefix([first, second]))
    assert shared >= 0.5 * len(first) > 0 and first != second  # two blocks of three in common
    assert len(os.path.commonprefix([first, other])) < 0.1 * len(first)
    assert abs(len(tokenizer.encode(first, add_special_tokens=False)) - 48) <= 4
    assert synthesize_prompts(trace, rows, tokenizer, seed=2)[0] != first  # a new seed: a new text


def test_a_guidellm_run_and_a_trace_replay_are_reported(system, tmp_path):
    # Two seconds of all three tenants in both classes, four tokens each: nothing here should be refused.
    rows = [
        row(0, [0, 1, 2], 4, "chat", "realtime"),
        row(200, [3, 4], 4, "agent", "realtime"),
        row(400, [5, 6, 7, 8], 4, "bulk", "batch"),
        row(700, [0, 1, 9], 4, "chat", "batch"),
        row(1000, [0, 1, 10], 4, "chat", "realtime"),
        row(1200, [3, 4, 11], 4, "agent", "realtime"),
        row(1500, [5, 6, 12, 13], 4, "bulk", "batch"),
        row(2000, [0, 1, 14], 4, "chat", "realtime"),
    ]
    trace = tmp_path / "ci_mixed.jsonl"
    write(trace, rows)
    keys = [f"--tenant-key={name}={key}" for name, key in suite_keys().items()]
    command = [sys.executable, "bench/load.py", "--target", system.url, "--admin-target", system.admin_url, *keys]
    command += ["--profiles", "concurrent"]
    command += ["--streams", "2", "--seconds", "3", "--prompt-tokens", "32", "--output-tokens", "4"]
    command += ["--traces", str(trace), "--results-dir", str(tmp_path / "results"), "--name", "ci"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:] + system.log_tail()

    report = json.loads((tmp_path / "results" / "ci.json").read_text())
    runs = {r["name"]: r for r in report["runs"]}
    assert set(runs) == {"concurrent@2", "replay/ci_mixed"}
    guided = runs["concurrent@2"]
    totals = guided["guidellm"]["request_totals"]
    assert guided["requests"] == sum(guided["status_counts"].values()) >= totals["total"] - totals["incomplete"]
    assert guided["succeeded"] == totals["successful"] > 0
    assert no_server_errors(guided["status_counts"]), guided["status_counts"]

    replayed = runs["replay/ci_mixed"]
    assert replayed["status_counts"] == {"200": len(rows)}
    groups = {(g["tenant"], g["qos"]): g for g in replayed["by_tenant_qos"]}
    assert {k: g["requests"] for k, g in groups.items()} == Counter((r["tenant"], r["qos"]) for r in rows)
    for group in groups.values():
        assert set(group["latency"]) == {"ttft_ms", "itl_ms", "e2e_s"}
        assert group["latency"]["ttft_ms"]["p50"] > 0 and set(group["latency"]["ttft_ms"]) == {"p50", "p95", "p99"}
        assert group["goodput"]["requests"] <= group["finished"]
    # The router answered what the client saw, request for request.
    counted = {c["phase"]: c for c in report["router_counted"]}
    client = Counter(f"{r['tenant']}/{r['qos']}/200" for r in rows)
    assert counted["replay/ci_mixed"]["requests"] == client
    # 499: a request guidellm cut off at the end; one cut off as it was sent may never reach the router.
    by_router = counted["guidellm concurrent"]["requests"]
    assert no_server_errors(k.rsplit("/", 1)[1] for k in by_router), by_router
    assert by_router.get("chat/realtime/200") == guided["succeeded"], (by_router, guided["status_counts"])
    assert guided["succeeded"] <= sum(by_router.values()) <= guided["requests"], (by_router, guided["status_counts"])
    assert report["slo"] and report["git_commit"] and report["machine"]["cpu_count"]
    assert (tmp_path / "results" / "ci.png").stat().st_size > 0
    assert "by tenant and QoS class" in (tmp_path / "results" / "ci.md").read_text()


def test_overload_is_refused_with_retry_after_rather_than_left_hanging(system, tmp_path, tokenizer):
    # agent (max_concurrent 2) sends six at once; bulk sends more batch requests than the pool's
    # batch share and batch queue hold together.
    burst = 4 + QOS["batch_queue"] + 4
    rows = [row(10 * i, [100 + 3 * i, 101 + 3 * i, 102 + 3 * i], 8, "agent", "realtime") for i in range(6)]
    rows += [row(20 * i, [200 + 3 * i, 201 + 3 * i, 202 + 3 * i], 8, "bulk", "batch") for i in range(burst)]
    trace = tmp_path / "ci_burst.jsonl"
    write(trace, rows)
    rows = read_trace(trace)
    prompts = synthesize_prompts(trace, rows, tokenizer, seed=int(time.time()))

    before, started = router_metrics.scrape(system.admin_url), time.monotonic()
    outcomes, _ = asyncio.run(replay(system.url, EMBEDDED_MODEL_NAME, rows, prompts, suite_keys(), 1.0, 90))
    took = time.monotonic() - started
    time.sleep(0.5)
    counted = router_metrics.delta(before, router_metrics.scrape(system.admin_url))

    assert len(outcomes) == len(rows)
    statuses = Counter(o.status for o in outcomes)
    assert set(statuses) <= {"200", "429"}, statuses  # no 5xx, no timeouts, no dropped connections
    refused = [o for o in outcomes if o.status == "429"]
    assert all(o.retry_after_s is not None and o.retry_after_s >= 1 for o in refused)
    agent_refused = [o for o in refused if o.tenant == "agent"]
    assert len(agent_refused) >= 3, statuses  # its limit is 2 in flight; six came within 60 ms
    assert max(o.e2e_s for o in agent_refused) < 5  # a tenant limit answers at once
    assert sum(o.tenant == "bulk" for o in refused) >= 4, statuses
    assert max(o.e2e_s for o in refused) < QOS["max_queue_wait_s"] + 10  # a queued request waits its bound at most
    assert took < 120
    # The router says why: agent's refusals are its tenant limit, bulk's the QoS gate shedding batch.
    assert counted["requests"] == Counter(f"{o.tenant}/{o.qos}/{o.status}" for o in outcomes)
    assert counted["rate_limited"] == {"agent/requests": len(agent_refused)}
    assert sum(n for k, n in counted["shed"].items() if k.startswith("batch/")) == len(refused) - len(agent_refused)

    # The router is fine afterwards.
    with urllib.request.urlopen(f"{system.url}/ready", timeout=5) as response:
        assert response.status == 200
