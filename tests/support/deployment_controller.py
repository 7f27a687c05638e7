"""A stand-in for kube-controller-manager's Deployment controller, talking to the API over HTTP.

Every `interval` seconds, for each apps/v1 Deployment: keep spec.replicas pods of its current
template (named `<deployment>-<template hash>-<5 random>`, labelled with the template's labels
and pod-template-hash, owned by the Deployment with controller: true), delete pods of older
templates and surplus pods (newest first), and write status (observedGeneration, replicas,
updatedReplicas, readyReplicas, availableReplicas, unavailableReplicas, the Available condition).

Simplified: no ReplicaSets (pods belong to the Deployment itself); a template change replaces all
old pods at once (neither RollingUpdate's surge limits nor Recreate's wait); minReadySeconds and
the Progressing condition are not emulated; orphaned pods matching the selector are not adopted.
"""

import asyncio
import copy
import datetime
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from tests.support.api_client import ApiClient, ApiError
from tests.support.api_paths import object_path
from tests.support.object_selectors import label_matcher, selector_query
from tests.support.object_writes import timestamp

TEMPLATE_HASH_LABEL = "pod-template-hash"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """What one pass does for one Deployment."""

    pods_to_create: int
    pods_to_delete: list[str]
    status: dict[str, Any]


def template_hash(template: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def plan(deployment: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], now: str) -> Plan:
    """Pure: the Deployment's pods (those it controls) and the time -> what to do and report."""
    spec = deployment["spec"]
    desired = spec.get("replicas", 1)
    current_hash = template_hash(spec["template"])
    live = [pod for pod in pods if not pod["metadata"].get("deletionTimestamp")]
    current = sorted(
        (pod for pod in live if pod["metadata"].get("labels", {}).get(TEMPLATE_HASH_LABEL) == current_hash),
        key=lambda pod: (pod["metadata"]["creationTimestamp"], pod["metadata"]["name"]),
    )
    outdated = [pod for pod in live if pod not in current]
    surplus = current[desired:][::-1]  # the newest go first (timestamps have whole seconds: then by name)
    ready = sum(1 for pod in live if _is_ready(pod))
    available = ready >= desired - _max_unavailable(spec, desired)
    status = {
        "observedGeneration": deployment["metadata"].get("generation", 1),
        "replicas": len(live),
        "updatedReplicas": len(current),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "unavailableReplicas": max(0, desired - ready),
        "conditions": [_available_condition(deployment.get("status") or {}, available, now)],
    }
    return Plan(
        pods_to_create=max(0, desired - len(current)),
        pods_to_delete=[pod["metadata"]["name"] for pod in outdated + surplus],
        status=status,
    )


def pod_for(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """A new pod from the Deployment's template; the API server completes its name."""
    metadata, template = deployment["metadata"], deployment["spec"]["template"]
    template_metadata = template.get("metadata") or {}
    current_hash = template_hash(template)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"{metadata['name']}-{current_hash}-",
            "namespace": metadata["namespace"],
            "labels": {**template_metadata.get("labels", {}), TEMPLATE_HASH_LABEL: current_hash},
            "annotations": dict(template_metadata.get("annotations", {})),
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": metadata["name"],
                "uid": metadata["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }],
        },
        "spec": copy.deepcopy(template["spec"]),
    }  # fmt: skip


async def reconcile(client: ApiClient, deployment: Mapping[str, Any], now: str) -> None:
    metadata = deployment["metadata"]
    if metadata.get("deletionTimestamp"):
        return  # the garbage collector takes its pods
    selector = selector_query(deployment["spec"]["selector"])
    if not label_matcher(selector)(deployment["spec"]["template"]):
        # A real API server refuses this Deployment; here its pods would never be found again.
        log.warning("deployment %s: the selector %r does not match the template's labels", metadata["name"], selector)
        return
    pods_path = object_path("v1", "pods", metadata["namespace"])
    candidates = await client.list(pods_path, label_selector=selector)
    pods = [pod for pod in candidates if _controller_uid(pod) == metadata["uid"]]
    step = plan(deployment, pods, now)
    for name in step.pods_to_delete:
        await client.delete(object_path("v1", "pods", metadata["namespace"], name))
    for _ in range(step.pods_to_create):
        await client.create(pods_path, pod_for(deployment))
    if step.status != deployment.get("status"):
        await client.replace_status(object_path("apps/v1", "deployments", metadata["namespace"], metadata["name"]), step.status)


async def run_deployment_controller(client: ApiClient, *, interval: float = 0.2) -> None:
    """Reconcile every Deployment, every `interval` seconds, until cancelled."""
    while True:
        try:
            for deployment in await client.list(object_path("apps/v1", "deployments")):
                await reconcile(client, deployment, timestamp(datetime.datetime.now(datetime.UTC)))
        except (ApiError, aiohttp.ClientError) as error:  # the next pass tries again
            log.info("deployment controller: %s", error)
        await asyncio.sleep(interval)


def _is_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _controller_uid(pod: Mapping[str, Any]) -> str | None:
    references = pod["metadata"].get("ownerReferences") or []
    return next((r.get("uid") for r in references if r.get("controller")), None)


def _max_unavailable(spec: Mapping[str, Any], desired: int) -> int:
    """How many pods may be unready while the Deployment still counts as Available."""
    strategy = spec.get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate" or desired == 0:
        return 0
    value = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", "25%")
    if isinstance(value, str) and value.endswith("%"):
        return desired * int(value[:-1]) // 100
    return int(value)


def _available_condition(old_status: Mapping[str, Any], available: bool, now: str) -> dict[str, Any]:
    status = "True" if available else "False"
    old = next((c for c in old_status.get("conditions") or [] if c.get("type") == "Available"), None)
    since = old["lastTransitionTime"] if old and old.get("status") == status else now
    return {
        "type": "Available",
        "status": status,
        "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
        "message": f"Deployment {'has' if available else 'does not have'} minimum availability.",
        "lastTransitionTime": since,
        "lastUpdateTime": since,
    }
