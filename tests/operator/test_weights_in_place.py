"""New weights rolled onto a running pool in place, on the local node (real `shoal runtime`
processes on the embedded model, the router and the operator as processes of their own; see
e2e/local_system.py): no new revision, no pod restarted, every replica on the new version, the
pool answering all along; weights the runtimes refuse leave the old ones serving and say why.
"""

import base64
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from e2e.local_system import API_KEY, POOL_API_VERSION, LocalSystem, local_system
from e2e.traffic import Outcomes, sending
from shoal.constants import RUNTIME_GRPC_PORT
from shoal.runtime.model.loader import materialize, resolve_model_source
from shoal.v1 import runtime_admin_pb2 as apb
from shoal.v1 import runtime_admin_pb2_grpc, runtime_pb2, runtime_pb2_grpc
from tests.support.api_paths import object_path
from tests.support.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
POOL = "weights"
FIRST_START_S = 240  # the first runtime may convert the embedded GGUF model (about 25 s once)
ROLL_S = 120


@pytest_asyncio.fixture
async def system(cluster, tmp_path) -> AsyncIterator[LocalSystem]:
    """The whole system on the local node (the operator tests' own `namespace` is the fake node's)."""
    namespace = cluster.create_namespace("weights")
    try:
        async with local_system(cluster, namespace, tmp_path) as running:
            try:
                yield running
            finally:  # pytest shows this only when the test fails
                print(running.log_tails())
    finally:
        cluster.delete_namespace(namespace)


def manifest() -> dict:
    return {
        "apiVersion": POOL_API_VERSION,
        "kind": "ModelPool",
        "metadata": {"name": POOL},
        "spec": {
            "model": {"source": "embedded", "revision": "v1", "servedName": POOL},
            "replicas": 2,
            "runtime": {
                "device": "cpu",
                "kvCacheMemory": "128MiB",
                "maxNumSeqs": 16,
                "env": [{"name": "OMP_NUM_THREADS", "value": "1"}],  # two runtimes share the cores
            },
            "resources": {"gpus": 0},
        },
    }


def weights_copy(directory: Path) -> Path:
    """The embedded model's safetensors, alone in a folder: what a trainer would write."""
    directory.mkdir()
    for tensors in materialize(resolve_model_source("default")).directory.glob("*.safetensors"):
        shutil.copy(tensors, directory)
    return directory


def weights_condition(status: dict) -> tuple[str, str, str]:
    found = next((c for c in status.get("conditions") or () if c["type"] == "WeightsUpdated"), {})
    return found.get("status", ""), found.get("reason", ""), found.get("message", "")


async def set_weights(system: LocalSystem, version: str, path: str) -> None:
    patch = {"spec": {"model": {"weights": {"version": version, "path": path}}}}
    await system.kubectl("patch", "mp", POOL, "--type", "merge", "-p", json.dumps(patch))


async def runtime_pods(system: LocalSystem) -> dict[str, dict]:
    pods = await system.kubectl_json("get", "pods", "-l", f"shoal.dev/pool={POOL}")
    return {pod["metadata"]["name"]: pod for pod in pods["items"]}


def restarts(pod: dict) -> int:
    return sum(s["restartCount"] for s in pod["status"]["containerStatuses"])


async def admin_token(system: LocalSystem) -> str:
    secret = await system.client.get(object_path("v1", "secrets", system.namespace, f"{POOL}-runtime-admin"))
    return base64.b64decode(secret["data"]["token"]).decode()


async def ask(pod: dict, token: str) -> tuple[apb.LifecycleState, runtime_pb2.ModelInfo]:
    """What the runtime itself says: its lifecycle (RuntimeAdmin) and its model info (Runtime)."""
    target = f"{pod['status']['podIP']}:{RUNTIME_GRPC_PORT}"
    async with grpc.aio.insecure_channel(target) as channel:
        lifecycle = await runtime_admin_pb2_grpc.RuntimeAdminStub(channel).GetLifecycle(
            apb.GetLifecycleRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=5
        )
        info = await runtime_pb2_grpc.RuntimeStub(channel).GetModelInfo(runtime_pb2.GetModelInfoRequest(), timeout=5)
    return lifecycle, info


async def answering(outcomes: Outcomes, more_than: int) -> None:
    async def answered() -> int:
        return sum(outcomes.ok.values())

    await eventually(answered, lambda n: n > more_than, timeout=60, what="requests answered through the router")


async def test_weights_roll_onto_every_replica_in_place_and_bad_ones_are_refused(system: LocalSystem, tmp_path):
    v2 = weights_copy(tmp_path / "v2")
    await system.kubectl("apply", "-f", "-", stdin=json.dumps(manifest()))
    ready = await system.wait_for_status(
        POOL, lambda s: s.get("phase") == "Ready" and s.get("readyReplicas") == 2, timeout=FIRST_START_S, what="Ready"
    )
    assert weights_condition(ready)[:2] == ("True", "NotRequested") and "weights" not in ready
    deployments = [d["metadata"]["name"] for d in (await system.kubectl_json("get", "deployments"))["items"]]
    pods = {name: (pod["metadata"]["uid"], restarts(pod)) for name, pod in (await runtime_pods(system)).items()}
    token = await admin_token(system)
    for pod in (await runtime_pods(system)).values():
        lifecycle, info = await ask(pod, token)
        assert lifecycle.weights_version == info.weights_version == "initial"

    async with sending(f"{system.router_url}/v1", API_KEY, POOL, concurrency=2) as outcomes:
        await answering(outcomes, 0)
        await set_weights(system, "v2", str(v2))
        status = await system.wait_for_status(
            POOL,
            lambda s: (
                weights_condition(s)[:2] == ("True", "Updated") and (s.get("weights") or {}).get("version") == "v2"
            ),
            timeout=ROLL_S,
            what="both replicas on weights v2",
        )
        await answering(outcomes, sum(outcomes.ok.values()))  # and after the roll
    assert not outcomes.failed, f"requests failed during the roll: {outcomes.summary()} {outcomes.errors[:5]}"
    assert status["weights"]["updated"] == 2 and "updating" not in status["weights"]
    assert sorted(r["pod"] for r in status["weights"]["replicas"]) == sorted(pods)
    assert {r["version"] for r in status["weights"]["replicas"]} == {"v2"}
    # In place: the same revision, Deployments and pods (not one restarted), no canary at any time.
    assert status["stableRevision"] == ready["stableRevision"] and not status.get("canaryRevision")
    assert not any(s.get("canaryRevision") for s in system.status_history(POOL))
    assert [d["metadata"]["name"] for d in (await system.kubectl_json("get", "deployments"))["items"]] == deployments
    now = await runtime_pods(system)
    assert {name: (pod["metadata"]["uid"], restarts(pod)) for name, pod in now.items()} == pods
    for pod in now.values():
        lifecycle, info = await ask(pod, token)
        assert (lifecycle.weights_version, info.weights_version) == ("v2", "v2")
        assert lifecycle.pause_mode == apb.PAUSE_MODE_UNSPECIFIED and lifecycle.weight_updates == 1

    # Weights the runtime cannot load: refused, the old ones keep serving, not tried again.
    async with sending(f"{system.router_url}/v1", API_KEY, POOL, concurrency=2) as outcomes:
        await set_weights(system, "v3", str(tmp_path / "no-such-folder"))
        status = await system.wait_for_status(
            POOL, lambda s: weights_condition(s)[1] == "UpdateRejected", timeout=ROLL_S, what="v3 rejected"
        )
        await answering(outcomes, 4)
    assert not outcomes.failed, f"requests failed after the rejection: {outcomes.summary()} {outcomes.errors[:5]}"
    _, _, message = weights_condition(status)
    assert "INVALID_ARGUMENT" in message and "no-such-folder" in message
    assert status["weights"]["rejected"]["version"] == "v3" and status["weights"]["updated"] == 0
    for pod in (await runtime_pods(system)).values():
        lifecycle, _ = await ask(pod, token)
        assert lifecycle.weights_version == "v2" and lifecycle.pause_mode == apb.PAUSE_MODE_UNSPECIFIED
        assert lifecycle.weight_updates == 1  # refused before anything was written; and only once
    events = [e for e in (await system.kubectl_json("get", "events"))["items"] if e["involvedObject"]["name"] == POOL]
    reasons = [e["reason"] for e in events]
    # kopf posts events in the background, best effort: the status above is the record; events are a courtesy.
    assert reasons.count("WeightsUpdated") >= 1 and reasons.count("WeightsRejected") == 1
