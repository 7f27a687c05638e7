"""The local node on the real control plane: a Node the scheduler binds to, and pods that each
have an address of their own (a network namespace on the node's bridge), so that two replicas
listen on the same port, and the host (like a Service's EndpointSlice) reaches each one."""

import ipaddress

import aiohttp
import pytest

from shoal.operator.route import is_ready
from tests.cluster.pods import HTTP_SERVER, POD_NAME_ENV, create, is_running, pid_of
from tests.support.api_client import ApiClient
from tests.support.api_paths import object_path
from tests.support.cluster import Cluster
from tests.support.polling import eventually

pytestmark = pytest.mark.asyncio


async def test_the_node_registers_its_capacity_and_the_gateway_as_its_address(cluster: Cluster, api: ApiClient):
    node = await api.get(object_path("v1", "nodes", name=cluster.node_name))
    assert {"cpu", "memory", "pods"} <= set(node["status"]["capacity"])
    [internal] = [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
    assert ipaddress.ip_address(internal).is_private and not node["spec"].get("taints")
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("local-process://")
    lease = await api.get(object_path("coordination.k8s.io/v1", "leases", "kube-node-lease", cluster.node_name))
    assert lease["spec"]["holderIdentity"] == cluster.node_name


async def test_a_deployments_replicas_listen_on_one_port_each_at_its_own_address(
    cluster: Cluster, api: ApiClient, namespace: str
):
    labels = {"app": "web"}
    container = {
        "name": "web",
        "image": "python:3",
        "command": ["python", "-c", HTTP_SERVER],
        "env": [POD_NAME_ENV],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": "http"}]},
    }
    await create(api, object_path("apps/v1", "deployments", namespace), deployment)
    await create(api, object_path("v1", "services", namespace), service)

    pods_path = object_path("v1", "pods", namespace)
    pods = await eventually(
        lambda: api.list(pods_path),
        lambda ps: len(ps) == 2 and all(map(is_ready, ps)),
        timeout=30,
        what="both replicas Ready",
    )
    addresses = {p["status"]["podIP"]: p["metadata"]["name"] for p in pods}
    assert len(addresses) == 2 and all(p["spec"]["nodeName"] == cluster.node_name for p in pods)
    assert all(p["status"]["podIPs"] == [{"ip": p["status"]["podIP"]}] for p in pods)
    async with aiohttp.ClientSession() as session:
        for address, name in addresses.items():
            async with session.get(f"http://{address}:8080/") as response:
                assert (response.status, await response.text()) == (200, name)

    slices = object_path("discovery.k8s.io/v1", "endpointslices", namespace)
    # The EndpointSlice controller works from its own informer cache, so it may first list a pod
    # that it has not yet seen Ready (ready: false) and mark it ready on a later sync.
    await eventually(
        lambda: api.list(slices, label_selector="kubernetes.io/service-name=web"),
        lambda found: (
            sorted(a for s in found for e in s.get("endpoints") or [] for a in e["addresses"]) == sorted(addresses)
            and all(e["conditions"]["ready"] for s in found for e in s["endpoints"])
        ),
        timeout=15,
        what="the Service's EndpointSlice listing both pods, ready",
    )
    deployment_path = object_path("apps/v1", "deployments", namespace, "web")
    await eventually(
        lambda: api.get(deployment_path),
        lambda d: d.get("status", {}).get("availableReplicas") == 2,
        timeout=15,
        what="the Deployment available",
    )

    # Deleting the Deployment: the garbage collector deletes its ReplicaSet and pods, and the node
    # stops their processes.
    await api.delete(deployment_path)
    await eventually(lambda: api.list(pods_path), lambda ps: ps == [], timeout=30, what="the pods gone")
    assert not any(is_running(pid_of(p)) for p in pods)
