"""A real `shoal runtime` pod on the local node (integration: it loads the embedded model): Ready
from its readiness probe, serving gRPC health at its pod IP, stopped when it is deleted."""

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shoal.operator.route import is_ready
from tests.cluster.pods import (
    container_status,
    create,
    is_running,
    log_of,
    phase,
    pid_of,
    pods_path,
    read_pod,
    wait_pod,
)
from tests.support.api_client import ApiClient
from tests.support.cluster import Cluster
from tests.support.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

RUNTIME = {
    "name": "runtime",
    "image": "ghcr.io/shoal-dev/shoal-runtime:0.1.0",
    "command": ["shoal", "runtime"],
    "args": [
        "--model",
        "default",
        "--device",
        "cpu",
        "--kv-cache-memory",
        "64MiB",
        "--host",
        "$(POD_IP)",
        "--port",
        "50051",
        "--metrics-port",
        "8001",
        "--pool",
        "chat",
        "--revision",
        "r1",
    ],
    "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
    "ports": [{"name": "grpc", "containerPort": 50051}, {"name": "metrics", "containerPort": 8001}],
    "readinessProbe": {"httpGet": {"path": "/ready", "port": "metrics"}, "periodSeconds": 1},
    "livenessProbe": {"httpGet": {"path": "/health", "port": "metrics"}, "initialDelaySeconds": 60},
    "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
}


async def test_a_runtime_pod_serves_grpc_health_at_its_pod_ip_until_it_is_deleted(
    cluster: Cluster, api: ApiClient, namespace: str
):
    await create(
        api,
        pods_path(namespace),
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "chat"}, "spec": {"containers": [RUNTIME]}},
    )
    ready = await wait_pod(api, namespace, "chat", is_ready, timeout=180, what="the runtime pod Ready")
    address = ready["status"]["podIP"]
    assert phase(ready) == "Running" and container_status(ready)["ready"]

    async with aiohttp.ClientSession() as session, session.get(f"http://{address}:8001/ready") as response:
        assert (response.status, await response.text()) == (200, "ready")
    async with grpc.aio.insecure_channel(f"{address}:50051") as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING

    pid = pid_of(ready)
    await api.delete(pods_path(namespace, "chat"))
    await eventually(lambda: read_pod(api, namespace, "chat"), lambda p: p == {}, timeout=20, what="the pod gone")
    assert not is_running(pid)
    assert "serving SmolLM2" in log_of(cluster, namespace, "chat")
