"""Canaries that fail in ways the runtimes' own /metrics tell, on the local cluster (local_system.py),
with clients sending throughout:

- a canary that runs out of memory: its runtime counts each request an out-of-memory step failed
  (shoal:oom_errors_total); the router reads the counter and pulls the canary back by its oom_errors
  rule, long before an error rate could have its samples;
- a canary whose /metrics cannot be read (the scrape target is down; the runtime serves well): no
  rollback comes of it, the rollout holds its step instead of going on half-judged, and the pool's
  MetricsScraped condition says which revision the router cannot read and which rules are blind.

The runtimes play these faults with test-only flags (`--fault-oom-above-tokens`: a CPU has no GPU
memory to run out of; `--fault-metrics-unavailable`); everything else is the real path.
"""

import asyncio
import json
import time

import pytest

from e2e.local_system import API_KEY, LOCAL, LocalSystem
from e2e.traffic import sending

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
POOL = "e2e-canary-faults"
MODEL = "e2e-chat"  # the manifest's servedName
FIRST_START_S = 240  # the first runtime may convert the embedded GGUF model (about 25 s once)
POD_START_S = 120
ROLLBACK_BOUND_S = 30  # from the canary's first traffic to the pool's RolledBack
SCRAPE_FAILING_S = 15  # from the blind canary's first traffic to its condition
HOLD_S = 10  # how long the blind canary is watched not moving on (its steps pause 3 s)


def conditions(status: dict) -> dict[str, dict]:
    return {c["type"]: c for c in status.get("conditions", [])}


async def test_a_canary_that_runs_out_of_memory_and_one_that_cannot_be_scraped(system: LocalSystem):
    manifest = (LOCAL / "modelpool.yaml").read_text().replace("name: e2e-chat", f"name: {POOL}")
    # So many samples that neither the error rate nor latency can judge: the OOM rule must act alone.
    manifest = manifest.replace("minSamples: 10", "minSamples: 100000")
    await system.kubectl("apply", "-f", "-", stdin=manifest)
    status = await system.wait_for_status(
        POOL, lambda s: s.get("phase") == "Ready", timeout=FIRST_START_S, what="pool Ready"
    )
    stable = status["stableRevision"]
    assert conditions(status)["MetricsScraped"]["status"] == "True"

    async with sending(f"{system.router_url}/v1", API_KEY, MODEL) as outcomes:
        # Any step of more than 8 tokens runs out of memory: every prompt's prefill does.
        oom = {"spec": {"model": {"revision": "v2"}, "runtime": {"args": ["--fault-oom-above-tokens", "8"]}}}
        status, took = await system.roll_back_faulty(POOL, oom, start_s=POD_START_S, rollback_s=ROLLBACK_BOUND_S)
        print(f"out-of-memory canary rolled back {took:.1f}s after it took traffic")
        oom_revision = status["rolledBackRevision"]
        assert oom_revision.startswith("v2-") and status["stableRevision"] == stable
        rules = [r["rule"] for r in status["lastRollback"]["rules"]]
        assert rules == ["oom_errors"], status["lastRollback"]
        assert status["lastRollback"]["rules"][0]["observed"]["canary_oom_errors"] >= 1
        assert "oom_errors" in conditions(status)["RolledBack"]["message"]

        # A canary that serves well but whose /metrics answer 503, with samples enough to step on.
        blind = [
            {"op": "replace", "path": "/spec/model/revision", "value": "v3"},
            {"op": "replace", "path": "/spec/runtime/args", "value": ["--fault-metrics-unavailable"]},
            {"op": "replace", "path": "/spec/rollout/analysis/minSamples", "value": 5},
        ]
        await system.kubectl("patch", "mp", POOL, "--type", "json", "-p", json.dumps(blind))
        status = await system.wait_for_status(
            POOL,
            lambda s: s.get("canaryWeight", 0) > 0 and s.get("canaryRevision", "").startswith("v3-"),
            timeout=POD_START_S,
            what="the unscrapable canary takes traffic",
        )
        blind_revision, weight = status["canaryRevision"], status["canaryWeight"]
        status = await system.wait_for_status(
            POOL,
            lambda s: conditions(s).get("MetricsScraped", {}).get("reason") == "ScrapeFailing",
            timeout=SCRAPE_FAILING_S,
            what="MetricsScraped says the canary cannot be read",
        )
        message = conditions(status)["MetricsScraped"]["message"]
        assert f"1/1 runtimes of canary {blind_revision}" in message and "oom_errors" in message, message
        held_from, answered_before = time.monotonic(), outcomes.ok[blind_revision]
        while time.monotonic() - held_from < HOLD_S:
            status = await system.pool_status(POOL)
            assert status.get("canaryRevision") == blind_revision and status.get("canaryWeight") == weight, status
            assert conditions(status)["RolledBack"]["status"] == "False", status  # no rollback of the blind one
            await asyncio.sleep(0.5)
        assert outcomes.ok[blind_revision] - answered_before >= 5  # it had the samples to step on
        assert "held while the router cannot read" in conditions(status)["Progressing"]["message"]

    # Only the out-of-memory canary failed requests; stable and the blind canary answered them all.
    assert set(outcomes.failed) <= {oom_revision}, (outcomes.summary(), outcomes.errors[:5])
    print(f"traffic: {outcomes.summary()}")
    await system.kubectl("delete", "mp", POOL, "--timeout=60s")
