"""A user's whole story, on this machine against a real control plane with the local node
standing in for a kubelet (see local_system.py): apply a ModelPool with kubectl, serve OpenAI
traffic through the router, roll a revision whose runtime fails requests on purpose and watch it
roll back by itself, roll a good one and watch it promote through every step, scale the pool,
delete it (the garbage collector takes its Deployments and pods).
"""

import json

import pytest

from e2e.local_system import API_KEY, LOCAL, LocalSystem
from e2e.traffic import Outcomes, sending
from tests.support.kubectl import KubectlError
from tests.support.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
POOL = "e2e-chat"
MANIFEST = LOCAL / "modelpool.yaml"
FIRST_START_S = 240  # the first runtime may convert the embedded GGUF model (about 25 s once)
POD_START_S = 120
ROLLBACK_BOUND_S = 30  # from the faulty canary's first traffic to the pool's RolledBack
PROMOTION_S = 120


async def answered(outcomes: Outcomes, revision: str, n: int, what: str) -> None:
    async def count() -> int:
        return outcomes.ok[revision]

    await eventually(count, lambda seen: seen >= n, timeout=60, what=what)


async def revisions_running(system: LocalSystem) -> set[str]:
    pods = await system.kubectl_json("get", "pods", "-l", f"shoal.dev/pool={POOL}")
    return {pod["metadata"]["labels"]["shoal.dev/revision"] for pod in pods["items"]}


async def pool_events(system: LocalSystem) -> list[tuple[str, str, str]]:
    """The pool's Events, oldest first (by eventTime: microseconds, where the list's order is by name)."""
    events = [e for e in (await system.kubectl_json("get", "events"))["items"] if e["involvedObject"]["name"] == POOL]
    events.sort(key=lambda e: e.get("eventTime") or e["firstTimestamp"])
    return [(e["type"], e["reason"], e["message"]) for e in events]


async def test_modelpool_story_on_the_local_cluster(system: LocalSystem):
    # A manifest the schema refuses is refused at apply time, and nothing is created.
    invalid = MANIFEST.read_text().replace("replicas: 1", "replicas: -1")
    with pytest.raises(KubectlError, match=r"spec\.replicas"):
        await system.kubectl("apply", "-f", "-", stdin=invalid)
    assert not (await system.kubectl_json("get", "modelpools"))["items"]

    await system.kubectl("apply", "-f", str(MANIFEST))
    status = await system.wait_for_status(
        POOL, lambda s: s.get("phase") == "Ready", timeout=FIRST_START_S, what="pool Ready"
    )
    stable = status["stableRevision"]
    assert stable.startswith("v1-") and status["readyReplicas"] == 1
    header, row = (await system.kubectl("get", "mp", POOL)).splitlines()
    assert header.split() == ["NAME", "READY", "STABLE", "CANARY", "WEIGHT", "PHASE", "AGE"]
    assert row.split()[:3] == [POOL, "1", stable] and "Ready" in row.split()

    async with sending(f"{system.router_url}/v1", API_KEY, POOL) as outcomes:
        await answered(outcomes, stable, 8, "answers from the stable revision")

        # A revision whose runtime fails half its requests: the router's error-rate rule pulls it
        # back, and the operator aborts the rollout by itself.
        faulty = {"spec": {"model": {"revision": "v2"}, "runtime": {"args": ["--fault-error-rate", "0.5"]}}}
        status, rollback_s = await system.roll_back_faulty(
            POOL, faulty, start_s=POD_START_S, rollback_s=ROLLBACK_BOUND_S
        )
        bad = status["rolledBackRevision"]
        assert bad.startswith("v2-") and status["stableRevision"] == stable and "canaryRevision" not in status
        assert "error_rate" in status["lastRollback"]["reason"], status["lastRollback"]
        rolled_back = next(c for c in status["conditions"] if c["type"] == "RolledBack")
        assert rolled_back["status"] == "True" and "error_rate" in rolled_back["message"]
        warnings = [(reason, message) for kind, reason, message in await pool_events(system) if kind == "Warning"]
        assert any(reason == "RolledBack" and bad in message for reason, message in warnings), warnings
        print(f"rolled back {rollback_s:.1f}s after the faulty canary first took traffic")

        # Clients keep being answered by the stable revision, and the faulty one's pods go.
        answered_before = outcomes.ok[stable]
        await answered(outcomes, stable, answered_before + 8, "stable answers after the rollback")
        await eventually(
            lambda: revisions_running(system), lambda running: running == {stable}, timeout=30, what="faulty pods gone"
        )

        # A good revision: through both steps (25 %, then 50 %), then promoted; the old one drains and goes.
        good_patch = [
            {"op": "replace", "path": "/spec/model/revision", "value": "v3"},
            {"op": "remove", "path": "/spec/runtime/args"},
        ]
        await system.kubectl("patch", "mp", POOL, "--type", "json", "-p", json.dumps(good_patch))
        status = await system.wait_for_status(
            POOL,
            lambda s: s.get("stableRevision", "").startswith("v3-") and s.get("phase") == "Ready",
            timeout=POD_START_S + PROMOTION_S,
            what="v3 promoted",
        )
        good = status["stableRevision"]
        weights = [s.get("canaryWeight") for s in system.status_history(POOL) if s.get("canaryRevision") == good]
        assert list(dict.fromkeys(weights)) == [0, 25, 50], weights  # ready first, then each step in order
        reasons = [reason for _, reason, message in await pool_events(system) if good in message]
        assert reasons == ["RolloutStarted", "CanaryStep", "CanaryStep", "Promoted"], reasons
        await eventually(
            lambda: revisions_running(system),
            lambda running: running == {good},
            timeout=30,
            what="old stable pods gone",
        )
        await answered(outcomes, good, 8, "answers from the promoted revision")

    # Every failure came from the faulty canary; clients routed to stable never saw one.
    assert set(outcomes.failed) == {bad}, (outcomes.summary(), outcomes.errors[:5])
    print(f"traffic: {outcomes.summary()}")

    # Scaled like a Deployment; the router gets the new replica's endpoint.
    await system.kubectl("scale", f"mp/{POOL}", "--replicas", "2")
    await system.wait_for_status(
        POOL, lambda s: s.get("readyReplicas") == 2, timeout=POD_START_S, what="2 replicas ready"
    )

    async def endpoints() -> int:
        route = (await system.router_pools()).get(f"{system.namespace}.{POOL}") or {}
        return len(route.get("revisions", {}).get(good, {}).get("endpoints", []))

    await eventually(endpoints, lambda n: n == 2, timeout=30, what="the router routes to both replicas")

    # The operator's own series tell the same story.
    pool_label = ("pool", f"{system.namespace}.{POOL}")
    series = await system.operator_metrics()
    for outcome in ("rolled_back", "promoted"):
        assert series["shoal:operator_rollouts_total", frozenset({pool_label, ("outcome", outcome)})] == 1
    assert series["shoal:operator_pool_replicas_desired", frozenset({pool_label})] == 2
    assert series["shoal:operator_pool_replicas_ready", frozenset({pool_label})] == 2
    assert series["shoal:operator_rollout_active", frozenset({pool_label})] == 0

    # Deleted: the route goes from the router, the Deployments and their pods go.
    await system.kubectl("delete", "mp", POOL, "--timeout=60s")
    await eventually(
        system.router_pools, lambda pools: f"{system.namespace}.{POOL}" not in pools, timeout=30, what="route removed"
    )
    await eventually(lambda: revisions_running(system), lambda running: not running, timeout=60, what="pods gone")
    assert not (await system.kubectl_json("get", "deployments"))["items"]
    assert not [key for key in await system.operator_metrics() if pool_label in key[1]]
