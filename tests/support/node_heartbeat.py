"""A node's standing with the control plane, as a kubelet keeps it: the Node object (capacity,
labels, taints, Ready) and its Lease in kube-node-lease, renewed every few seconds. Without the
renewals the node lifecycle controller marks the node NotReady and the scheduler stops binding
pods to it.

Shared by the local node (local_node.py) and the fake nodes of tests that stand fake runtimes in
for pods (kwok's approach: a node that is only API objects)."""

import asyncio
import datetime
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.support.api_client import ApiClient, ApiError
from tests.support.api_paths import object_path

LEASE_DURATION_S = 40
RENEW_INTERVAL_S = 10.0
KUBELET_VERSION = "v1.36.3"  # the control plane's version (tests/support/k8s_binaries/go.mod)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeShape:
    name: str
    address: str  # InternalIP: where the node's pods and probes are reached from
    capacity: Mapping[str, str] = field(default_factory=lambda: {"cpu": "64", "memory": "256Gi", "pods": "110"})
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Mapping[str, str], ...] = ()
    runtime: str = "local-process://1"  # what the node reports as its container runtime


def node_object(shape: NodeShape) -> dict[str, Any]:
    labels = {
        "kubernetes.io/hostname": shape.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        **shape.labels,
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": shape.name, "labels": labels},
        "spec": {"taints": [dict(taint) for taint in shape.taints]} if shape.taints else {},
    }


def node_status(shape: NodeShape, now: str) -> dict[str, Any]:
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": f"{shape.runtime} is ready",
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }
    return {
        "capacity": dict(shape.capacity),
        "allocatable": dict(shape.capacity),
        "conditions": [ready],
        "addresses": [{"type": "InternalIP", "address": shape.address}, {"type": "Hostname", "address": shape.name}],
        "nodeInfo": {
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
            "kernelVersion": "",
            "osImage": "",
            "containerRuntimeVersion": shape.runtime,
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


async def register_node(client: ApiClient, shape: NodeShape) -> None:
    """Create the Node (or take over the one left by an earlier run) and report it Ready."""
    path = object_path("v1", "nodes", name=shape.name)
    try:
        await client.create(object_path("v1", "nodes"), node_object(shape))
    except ApiError as error:
        if error.status != 409:
            raise
        await client.merge_patch(path, node_object(shape))
    await client.merge_patch(f"{path}/status", {"status": node_status(shape, now())})


async def keep_alive(client: ApiClient, shape: NodeShape, *, interval_s: float = RENEW_INTERVAL_S) -> None:
    """Renew the node's Lease every interval until cancelled (a failed renewal is retried)."""
    path = object_path("coordination.k8s.io/v1", "leases", "kube-node-lease", shape.name)
    while True:
        try:
            await _renew(client, path, shape.name)
        except (ApiError, aiohttp.ClientError) as error:
            log.warning("node %s: lease not renewed: %s", shape.name, error)
        await asyncio.sleep(interval_s)


async def _renew(client: ApiClient, path: str, name: str) -> None:
    spec = {"holderIdentity": name, "leaseDurationSeconds": LEASE_DURATION_S, "renewTime": now(micro=True)}
    try:
        await client.merge_patch(path, {"spec": spec})
    except ApiError as error:
        if error.status != 404:
            raise
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": spec,
        }
        await client.create(path.rsplit("/", 1)[0], lease)


def now(*, micro: bool = False) -> str:
    """The API's time format: seconds for most fields, microseconds for a Lease's renewTime."""
    moment = datetime.datetime.now(datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")
