"""The stand-in Deployment controller: its pure plan, and the controller against the emulated API."""

import asyncio
import contextlib
import re

import pytest

from tests.cluster_emulator.servers import emulated_api
from tests.support.api_paths import object_path
from tests.support.deployment_controller import TEMPLATE_HASH_LABEL, plan, pod_for, run_deployment_controller, template_hash
from tests.support.polling import eventually

DEPLOYMENTS = object_path("apps/v1", "deployments", "default")
PODS = object_path("v1", "pods", "default")
TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}


def deployment(replicas: int = 3, template: dict = TEMPLATE, **spec) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "d-1", "generation": 4},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, "template": template, **spec},
    }


def pod(name: str, created: str, *, template: dict = TEMPLATE, ready: bool = False, terminating: bool = False) -> dict:
    metadata = {"name": name, "creationTimestamp": created, "labels": {TEMPLATE_HASH_LABEL: template_hash(template)}}
    if terminating:
        metadata["deletionTimestamp"] = created
    return {"metadata": metadata, "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_emulated_deployment_plan_creates_the_missing_pods():
    step = plan(deployment(3), [], now="t0")
    assert step.pods_to_create == 3 and step.pods_to_delete == []
    assert step.status["observedGeneration"] == 4 and step.status["replicas"] == 0
    assert step.status["conditions"][0]["status"] == "False"


def test_emulated_deployment_plan_deletes_the_newest_surplus_and_every_outdated_pod():
    pods = [pod("a", "t1"), pod("b", "t3"), pod("c", "t2"), pod("old", "t0", template={"spec": {}})]
    step = plan(deployment(1), pods, now="t9")
    assert step.pods_to_delete == ["old", "b", "c"] and step.pods_to_create == 0
    assert (step.status["replicas"], step.status["updatedReplicas"]) == (4, 3)


def test_emulated_deployment_plan_ignores_terminating_pods():
    step = plan(deployment(2), [pod("a", "t1"), pod("gone", "t2", terminating=True)], now="t9")
    assert step.pods_to_create == 1 and step.pods_to_delete == [] and step.status["replicas"] == 1


def test_emulated_deployment_is_available_within_max_unavailable():
    four_of_which_three_ready = [pod(name, "t1", ready=name != "d") for name in "abcd"]
    step = plan(deployment(4), four_of_which_three_ready, now="t9")  # 25% of 4: one may be unready
    assert step.status["readyReplicas"] == 3 and step.status["unavailableReplicas"] == 1
    assert step.status["conditions"][0] | {"lastTransitionTime": None, "lastUpdateTime": None} == {
        "type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
        "message": "Deployment has minimum availability.", "lastTransitionTime": None, "lastUpdateTime": None,
    }  # fmt: skip
    strict = plan(deployment(4, strategy={"type": "Recreate"}), four_of_which_three_ready, now="t9")
    assert strict.status["conditions"][0]["status"] == "False"


def test_emulated_deployment_condition_keeps_its_transition_time_while_unchanged():
    first = plan(deployment(1), [pod("a", "t1", ready=True)], now="t5")
    later = plan({**deployment(1), "status": first.status}, [pod("a", "t1", ready=True)], now="t9")
    assert later.status == first.status
    flipped = plan({**deployment(1), "status": first.status}, [pod("a", "t1")], now="t9")
    assert flipped.status["conditions"][0]["lastTransitionTime"] == "t9"


def test_emulated_deployment_pod_comes_from_the_template_and_is_owned_by_the_deployment():
    new = pod_for(deployment())
    assert new["metadata"]["generateName"] == f"web-{template_hash(TEMPLATE)}-"
    assert new["metadata"]["labels"] == {"app": "web", TEMPLATE_HASH_LABEL: template_hash(TEMPLATE)}
    assert new["metadata"]["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d-1", "controller": True, "blockOwnerDeletion": True}]
    assert new["spec"] == TEMPLATE["spec"] and new["spec"] is not TEMPLATE["spec"]


@contextlib.asynccontextmanager
async def controller_on(cluster):
    task = asyncio.create_task(run_deployment_controller(cluster.client, interval=0.05))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.asyncio
async def test_emulated_deployment_controller_keeps_the_replicas_and_replaces_pods_on_a_template_change(tmp_path):
    async with emulated_api(tmp_path) as cluster, controller_on(cluster):
        created = await cluster.client.create(DEPLOYMENTS, {k: v for k, v in deployment(3).items() if k != "metadata"} | {"metadata": {"name": "web"}})
        pods = await eventually(lambda: cluster.client.list(PODS), lambda pods: len(pods) == 3, what="three pods")
        first_hash = template_hash(TEMPLATE)
        for each in pods:
            assert re.fullmatch(rf"web-{first_hash}-[a-z0-9]{{5}}", each["metadata"]["name"])
            assert each["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]

        await cluster.client.delete(f"{PODS}/{pods[0]['metadata']['name']}")
        replaced = await eventually(lambda: cluster.client.list(PODS), lambda now: len(now) == 3 and pods[0] not in now, what="a replacement pod")

        await cluster.client.merge_patch(f"{DEPLOYMENTS}/web", {"spec": {"replicas": 1}})
        [kept] = await eventually(lambda: cluster.client.list(PODS), lambda now: len(now) == 1, what="scaling down to one")
        oldest = min(replaced, key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["name"]))  # whole seconds: names break ties
        assert kept["metadata"]["name"] == oldest["metadata"]["name"]

        new_template = {**TEMPLATE, "spec": {"containers": [{"name": "c", "image": "i:2"}]}}
        await cluster.client.merge_patch(f"{DEPLOYMENTS}/web", {"spec": {"template": new_template}})
        [renewed] = await eventually(
            lambda: cluster.client.list(PODS),
            lambda now: [p["metadata"]["labels"][TEMPLATE_HASH_LABEL] for p in now] == [template_hash(new_template)],
            what="the pod of the new template",
        )
        assert renewed["spec"]["containers"][0]["image"] == "i:2"


@pytest.mark.asyncio
async def test_emulated_deployment_controller_writes_status_from_its_pods(tmp_path):
    async with emulated_api(tmp_path) as cluster, controller_on(cluster):
        await cluster.client.create(DEPLOYMENTS, {"metadata": {"name": "web"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE}})
        [unready] = await eventually(lambda: cluster.client.list(PODS), lambda pods: len(pods) == 1, what="one pod")
        status = (await eventually(lambda: cluster.client.list(DEPLOYMENTS), lambda ds: "status" in ds[0]))[0]["status"]
        assert status["observedGeneration"] == 1 and status["replicas"] == 1 and status["updatedReplicas"] == 1
        assert status["readyReplicas"] == 0 and status["conditions"][0]["status"] == "False"

        # What a kubelet would write once the pod's readiness probe passes.
        await cluster.client.replace_status(f"{PODS}/{unready['metadata']['name']}", {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]})
        [ready] = await eventually(lambda: cluster.client.list(DEPLOYMENTS), lambda ds: ds[0]["status"]["readyReplicas"] == 1, what="readyReplicas 1")
        assert ready["status"]["availableReplicas"] == 1 and ready["status"]["conditions"][0]["status"] == "True"

        await cluster.client.merge_patch(f"{DEPLOYMENTS}/web", {"spec": {"replicas": 2}})
        await eventually(lambda: cluster.client.list(DEPLOYMENTS), lambda ds: ds[0]["status"]["observedGeneration"] == 2, what="observedGeneration 2")


@pytest.mark.asyncio
async def test_emulated_deployment_controller_creates_no_pods_its_selector_would_not_find(tmp_path):
    async with emulated_api(tmp_path) as cluster, controller_on(cluster):
        await cluster.client.create(DEPLOYMENTS, {"metadata": {"name": "web"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "other"}}, "template": TEMPLATE}})
        await asyncio.sleep(0.3)  # several passes of the controller
        assert await cluster.client.list(PODS) == []
