"""The local node running pods of the emulated cluster as processes: refusals, crash loops, and
(integration) a real `shoal runtime` pod on its own loopback address, through the whole chain."""

import json
import os
import re

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.api_paths import object_path
from tests.support.emulated_cluster import emulated_cluster
from tests.support.kubectl import kubectl
from tests.support.polling import eventually

pytestmark = pytest.mark.asyncio

PODS = object_path("v1", "pods", "default")
RUNTIME = {
    "name": "runtime",
    "image": "ghcr.io/shoal-dev/shoal-runtime:0.1.0",
    "command": ["shoal", "runtime"],
    "args": [
        "--model", "default", "--device", "cpu", "--kv-cache-memory", "64MiB",
        "--host", "$(POD_IP)", "--port", "50051", "--metrics-port", "8001", "--pool", "chat", "--revision", "r1",
    ],
    "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
    "ports": [{"name": "grpc", "containerPort": 50051}, {"name": "metrics", "containerPort": 8001}],
    "readinessProbe": {"httpGet": {"path": "/ready", "port": "metrics"}, "periodSeconds": 1},
    "livenessProbe": {"httpGet": {"path": "/health", "port": "metrics"}, "initialDelaySeconds": 60},
}  # fmt: skip


def pod(name: str, container: dict, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [container], **spec}}


def is_ready(obj: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (obj.get("status") or {}).get("conditions", []))


def pid_of(obj: dict) -> int:
    return int(obj["status"]["containerStatuses"][0]["containerID"].removeprefix("local://"))


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_emulated_node_binds_a_pod_it_cannot_run_and_reports_it_failed(tmp_path):
    async with emulated_cluster(tmp_path) as cluster:
        await cluster.client.create(PODS, pod("sleeper", {"name": "c", "image": "busybox", "command": ["sleep", "60"]}))
        [refused] = await eventually(lambda: cluster.client.list(PODS), lambda pods: pods[0]["status"]["phase"] == "Failed", what="a refusal")
        assert refused["spec"]["nodeName"] == "local-node"
        assert refused["status"]["reason"] == "UnsupportedByLocalNode"
        assert "only `shoal ...` commands" in refused["status"]["message"]


async def test_emulated_node_restarts_a_crashing_container_and_logs_its_output(tmp_path):
    crashing = {"name": "c", "image": "i", "command": ["shoal", "no-such-subcommand"]}
    async with emulated_cluster(tmp_path) as cluster:
        await cluster.client.create(PODS, pod("loop", crashing))
        await cluster.client.create(PODS, pod("once", crashing, restartPolicy="Never"))

        def container(pods: list[dict], name: str) -> dict:
            return next(p for p in pods if p["metadata"]["name"] == name).get("status", {}).get("containerStatuses", [{}])[0]

        pods = await eventually(
            lambda: cluster.client.list(PODS),
            lambda pods: container(pods, "loop").get("restartCount", 0) >= 2 and "terminated" in container(pods, "once").get("state", {}),
            timeout=20,
            what="two restarts",
        )
        loop = container(pods, "loop")
        assert loop["lastState"]["terminated"]["exitCode"] == 2  # argparse's exit code
        assert next(p for p in pods if p["metadata"]["name"] == "loop")["status"]["phase"] == "Running"
        assert container(pods, "once")["state"]["terminated"]["exitCode"] == 2 and container(pods, "once")["restartCount"] == 0
        assert next(p for p in pods if p["metadata"]["name"] == "once")["status"]["phase"] == "Failed"
        assert "invalid choice: 'no-such-subcommand'" in (cluster.pod_logs / "default_loop.log").read_text()


@pytest.mark.integration
async def test_emulated_node_runs_a_real_runtime_pod_on_its_own_address_until_it_is_deleted(tmp_path):
    async with emulated_cluster(tmp_path) as cluster:
        await cluster.client.create(PODS, pod("chat", RUNTIME))
        [ready] = await eventually(lambda: cluster.client.list(PODS), lambda pods: is_ready(pods[0]), timeout=120, what="the runtime pod Ready")
        address = ready["status"]["podIP"]
        assert re.fullmatch(r"127\.0\.0\.\d+", address) and address != "127.0.0.1"
        assert ready["status"]["phase"] == "Running" and ready["status"]["containerStatuses"][0]["ready"]

        async with aiohttp.ClientSession() as session, session.get(f"http://{address}:8001/ready") as response:
            assert (response.status, await response.text()) == (200, "ready")
        async with grpc.aio.insecure_channel(f"{address}:50051") as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING

        pid = pid_of(ready)
        await cluster.client.delete(f"{PODS}/chat")  # graceful: the node stops it, then deletes it
        await eventually(lambda: cluster.client.list(PODS), lambda pods: pods == [], timeout=20, what="the pod gone")
        assert not is_running(pid)
        assert "serving SmolLM2" in (cluster.pod_logs / "default_chat.log").read_text()


@pytest.mark.integration
async def test_emulated_cluster_runs_a_pools_deployment_and_deleting_the_pool_stops_its_processes(tmp_path):
    pool = {"apiVersion": "shoal.dev/v1alpha1", "kind": "ModelPool", "metadata": {"name": "chat"}, "spec": {"model": {"revision": "r1"}, "replicas": 1}}
    async with emulated_cluster(tmp_path) as cluster:
        await kubectl(cluster.kubeconfig, "apply", "--validate=false", "-f", "-", stdin=json.dumps(pool))
        owner = json.loads(await kubectl(cluster.kubeconfig, "get", "mp", "chat", "-o", "json"))
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "chat-r1", "ownerReferences": [{"apiVersion": "shoal.dev/v1alpha1", "kind": "ModelPool", "name": "chat", "uid": owner["metadata"]["uid"], "controller": True}]},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"pool": "chat"}}, "template": {"metadata": {"labels": {"pool": "chat"}}, "spec": {"containers": [RUNTIME]}}},
        }  # fmt: skip
        await kubectl(cluster.kubeconfig, "apply", "--validate=false", "-f", "-", stdin=json.dumps(deployment))

        deployments = object_path("apps/v1", "deployments", "default")
        await eventually(lambda: cluster.client.list(deployments), lambda ds: ds[0].get("status", {}).get("availableReplicas") == 1, timeout=120, what="the Deployment available")
        [running] = await cluster.client.list(PODS)
        assert is_ready(running) and is_running(pid_of(running))

        await kubectl(cluster.kubeconfig, "delete", "mp", "chat")
        await eventually(lambda: cluster.client.list(PODS), lambda pods: pods == [], timeout=20, what="the pods gone")
        assert await cluster.client.list(deployments) == []
        assert not is_running(pid_of(running))
