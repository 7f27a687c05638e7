"""The emulated API server over HTTP: what a real API server does that clients depend on."""

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from tests.cluster_emulator.servers import ApiUnderTest, emulated_api
from tests.support.api_paths import object_path
from tests.support.emulated_api import EmulatedApiServer, FieldError, serving
from tests.support.patches import MERGE_PATCH

pytestmark = pytest.mark.asyncio

POOLS = object_path("shoal.dev/v1alpha1", "modelpools", "default")
DEPLOYMENTS = object_path("apps/v1", "deployments", "default")
PODS = object_path("v1", "pods", "default")


def pool(name: str, replicas: int = 1, **metadata: Any) -> dict:
    return {"apiVersion": "shoal.dev/v1alpha1", "kind": "ModelPool", "metadata": {"name": name, **metadata}, "spec": {"model": {"revision": "r1"}, "replicas": replicas}}


def owned_by(owner: dict) -> list[dict]:
    metadata = owner["metadata"]
    return [{"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": metadata["name"], "uid": metadata["uid"], "controller": True}]


def deployment(name: str, **metadata: Any) -> dict:
    template = {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, **metadata}, "spec": {"selector": {"matchLabels": {"app": name}}, "template": template}}


def pod(name: str, **fields: Any) -> dict:
    spec = {"containers": [{"name": "c", "image": "i"}], **fields.pop("spec", {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **fields}, "spec": spec}


async def call(cluster: ApiUnderTest, method: str, path: str, body: Any = None, content_type: str = "application/json") -> tuple[int, Any]:
    data = None if body is None else json.dumps(body)
    async with cluster.session.request(method, cluster.url + path, data=data, headers={"Content-Type": content_type}) as response:
        return response.status, await response.json(content_type=None)


async def names(cluster: ApiUnderTest, path: str) -> set[str]:
    return {item["metadata"]["name"] for item in await cluster.client.list(path)}


async def test_emulated_lists_carry_kind_apiversion_and_resourceversion(tmp_path):
    async with emulated_api(tmp_path) as cluster:
        await cluster.client.create(POOLS, pool("a", labels={"tier": "x"}))
        last = await cluster.client.create(POOLS, pool("b"))

        status, pools = await call(cluster, "GET", POOLS)
        assert status == 200 and pools["kind"] == "ModelPoolList" and pools["apiVersion"] == "shoal.dev/v1alpha1"
        assert pools["metadata"]["resourceVersion"] == last["metadata"]["resourceVersion"]
        assert [item["kind"] for item in pools["items"]] == ["ModelPool", "ModelPool"]
        _, namespaces = await call(cluster, "GET", "/api/v1/namespaces")
        assert namespaces["kind"] == "NamespaceList" and namespaces["apiVersion"] == "v1"
        assert [item["metadata"]["name"] for item in namespaces["items"]] == ["default"]
        assert [item["metadata"]["name"] for item in await cluster.client.list(POOLS, label_selector="tier=x")] == ["a"]


async def test_emulated_resource_versions_rise_on_every_write_but_not_on_a_write_that_changes_nothing(tmp_path):
    async with emulated_api(tmp_path) as cluster:
        created = await cluster.client.create(POOLS, pool("a"))
        relabelled = await cluster.client.merge_patch(f"{POOLS}/a", {"metadata": {"labels": {"x": "1"}}})
        unchanged = await cluster.client.merge_patch(f"{POOLS}/a", {"metadata": {"labels": {"x": "1"}}})
        versions = [int(obj["metadata"]["resourceVersion"]) for obj in (created, relabelled, unchanged)]
        assert versions[0] < versions[1] == versions[2]
        assert len(cluster.api.objects["shoal.dev/v1alpha1/modelpools", "default", "a"].history) == 2


async def test_emulated_status_subresource_keeps_status_and_spec_writes_apart(tmp_path):
    async with emulated_api(tmp_path) as cluster:
        created = await cluster.client.create(POOLS, {**pool("a"), "status": {"phase": "forged"}})
        assert "status" not in created

        status_written = await cluster.client.merge_patch(f"{POOLS}/a/status", {"spec": {"replicas": 9}, "status": {"phase": "Ready"}})
        assert status_written["status"] == {"phase": "Ready"} and status_written["spec"]["replicas"] == 1
        assert status_written["metadata"]["generation"] == 1

        spec_written = await cluster.client.merge_patch(f"{POOLS}/a", {"spec": {"replicas": 2}, "status": {"phase": "forged"}})
        assert spec_written["status"] == {"phase": "Ready"} and spec_written["spec"]["replicas"] == 2
        assert spec_written["metadata"]["generation"] == 2

        status, _ = await call(cluster, "PATCH", f"{object_path('v1', 'configmaps', 'default')}/x/status", {}, MERGE_PATCH)
        assert status == 404  # configmaps have no status subresource (and no x)


async def test_emulated_pods_start_pending_whatever_status_they_are_sent_with(tmp_path):
    async with emulated_api(tmp_path) as cluster:
        created = await cluster.client.create(PODS, {**pod("p"), "status": {"phase": "Running"}})
        assert created["status"] == {"phase": "Pending"}


async def test_emulated_validation_hook_rejects_invalid_objects_with_422(tmp_path):
    def at_most_five(obj):
        if obj["spec"]["replicas"] > 5:
            yield FieldError("spec.replicas", f"Invalid value: {obj['spec']['replicas']}: must be at most 5")

    async with emulated_api(tmp_path, validators={"shoal.dev/v1alpha1/modelpools": at_most_five}) as cluster:
        status, body = await call(cluster, "POST", POOLS, pool("big", replicas=6))
        assert status == 422 and body["kind"] == "Status" and body["reason"] == "Invalid"
        assert body["message"] == 'ModelPool.shoal.dev "big" is invalid: spec.replicas: Invalid value: 6: must be at most 5'
        assert body["details"]["causes"] == [{"reason": "FieldValueInvalid", "message": "Invalid value: 6: must be at most 5", "field": "spec.replicas"}]

        await cluster.client.create(POOLS, pool("small", replicas=2))
        status, body = await call(cluster, "PATCH", f"{POOLS}/small/scale", {"spec": {"replicas": 9}}, MERGE_PATCH)
        assert status == 422 and body["details"]["causes"][0]["field"] == "spec.replicas"
        assert (await cluster.client.get(f"{POOLS}/small"))["spec"]["replicas"] == 2


async def test_emulated_write_with_a_stale_resource_version_conflicts(tmp_path):
    async with emulated_api(tmp_path) as cluster:
        first = await cluster.client.create(POOLS, pool("a"))
        second = await cluster.client.merge_patch(f"{POOLS}/a", {"spec": {"replicas": 2}})

        status, body = await call(cluster, "PUT", f"{POOLS}/a", {**first, "spec": {**first["spec"], "replicas": 3}})
        assert status == 409 and body["reason"] == "Conflict"
        status, body = await call(cluster, "PUT", f"{POOLS}/a", {**second, "spec": {**second["spec"], "replicas": 3}})
        assert status == 200 and body["spec"]["replicas"] == 3


async def test_emulated_watch_resumes_after_a_resource_version_and_ends_on_its_timeout(tmp_path):
    async with emulated_api(tmp_path) as cluster:
        since = (await cluster.client.create(POOLS, pool("a")))["metadata"]["resourceVersion"]
        await cluster.client.create(POOLS, pool("b"))
        await cluster.client.merge_patch(f"{POOLS}/a", {"spec": {"replicas": 2}})

        async def watch(query: str) -> list[tuple[str, str]]:
            async with cluster.session.get(f"{cluster.url}{POOLS}?watch=true&timeoutSeconds=1{query}") as response:
                return [(event["type"], event["object"]["metadata"]["name"]) for event in map(json.loads, (await response.read()).splitlines())]

        assert await asyncio.wait_for(watch(f"&resourceVersion={since}"), timeout=5) == [("ADDED", "b"), ("MODIFIED", "a")]
        assert await asyncio.wait_for(watch(""), timeout=5) == [("ADDED", "a"), ("ADDED", "b")]
        assert await asyncio.wait_for(watch("&fieldSelector=metadata.name=b"), timeout=5) == [("ADDED", "b")]


async def test_emulated_watch_streams_live_events(tmp_path):
    async with emulated_api(tmp_path) as cluster:
        async with cluster.session.get(f"{cluster.url}{POOLS}?watch=1") as response:
            await cluster.client.create(POOLS, pool("a"))
            await cluster.client.delete(f"{POOLS}/a")
            events = [json.loads(await asyncio.wait_for(response.content.readline(), timeout=5)) for _ in range(2)]
        assert [(event["type"], event["object"]["metadata"]["name"]) for event in events] == [("ADDED", "a"), ("DELETED", "a")]


async def test_emulated_deleting_a_deployment_deletes_the_pods_it_owns(tmp_path):
    async with emulated_api(tmp_path) as cluster:
        owner = await cluster.client.create(DEPLOYMENTS, deployment("web"))
        for name in ("web-1", "web-2"):
            await cluster.client.create(PODS, pod(name, ownerReferences=owned_by(owner)))
        await cluster.client.create(PODS, pod("other"))

        await cluster.client.delete(f"{DEPLOYMENTS}/web")
        assert await names(cluster, PODS) == {"other"}


async def test_emulated_deleting_a_modelpool_removes_its_deployment_and_their_pods(tmp_path):
    async with emulated_api(tmp_path) as cluster:
        owner = await cluster.client.create(POOLS, pool("chat"))
        child = await cluster.client.create(DEPLOYMENTS, deployment("chat-r1", ownerReferences=owned_by(owner)))
        await cluster.client.create(PODS, pod("chat-r1-a", ownerReferences=owned_by(child)))

        await cluster.client.delete(f"{POOLS}/chat")
        assert await names(cluster, DEPLOYMENTS) == set() and await names(cluster, PODS) == set()


async def test_emulated_dependent_of_two_owners_outlives_one_and_loses_its_reference(tmp_path):
    async with emulated_api(tmp_path) as cluster:
        first, second = [await cluster.client.create(POOLS, pool(name)) for name in ("a", "b")]
        await cluster.client.create(PODS, pod("shared", ownerReferences=owned_by(first) + owned_by(second)))

        await cluster.client.delete(f"{POOLS}/a")
        [shared] = await cluster.client.list(PODS)
        assert [reference["name"] for reference in shared["metadata"]["ownerReferences"]] == ["b"]
        await cluster.client.delete(f"{POOLS}/b")
        assert await names(cluster, PODS) == set()


async def test_emulated_pod_on_a_node_is_deleted_gracefully_and_gone_when_the_kubelet_says_so(tmp_path):
    async with emulated_api(tmp_path) as cluster:
        await cluster.client.create(PODS, pod("p", spec={"nodeName": "n", "terminationGracePeriodSeconds": 7}))
        await cluster.client.delete(f"{PODS}/p")
        terminating = await cluster.client.get(f"{PODS}/p")
        assert terminating["metadata"]["deletionTimestamp"] and terminating["metadata"]["deletionGracePeriodSeconds"] == 7

        await cluster.client.delete(f"{PODS}/p", grace_seconds=0)
        assert await names(cluster, PODS) == set()


async def test_emulated_finalizers_hold_deletion_and_their_removal_completes_it(tmp_path):
    async with emulated_api(tmp_path) as cluster:
        owner = await cluster.client.create(POOLS, pool("chat", finalizers=["shoal.dev/cleanup"]))
        await cluster.client.create(DEPLOYMENTS, deployment("chat-r1", ownerReferences=owned_by(owner)))

        await cluster.client.delete(f"{POOLS}/chat")
        [held] = await cluster.client.list(POOLS)
        assert held["metadata"]["deletionTimestamp"] and await names(cluster, DEPLOYMENTS) == {"chat-r1"}
        await cluster.client.merge_patch(f"{POOLS}/chat", {"metadata": {"finalizers": None}})
        assert await names(cluster, POOLS) == set() and await names(cluster, DEPLOYMENTS) == set()


async def test_emulated_namespaces_must_exist_and_their_deletion_takes_their_objects(tmp_path):
    team = object_path("shoal.dev/v1alpha1", "modelpools", "team")
    async with emulated_api(tmp_path) as cluster:
        status, body = await call(cluster, "POST", team, pool("chat"))
        assert status == 404 and body["message"] == 'namespaces "team" not found'

        await cluster.client.create("/api/v1/namespaces", {"metadata": {"name": "team"}})
        await cluster.client.create(team, pool("chat"))
        await cluster.client.create(POOLS, pool("chat"))
        await cluster.client.delete("/api/v1/namespaces/team")
        assert await names(cluster, team) == set() and await names(cluster, POOLS) == {"chat"}


async def test_emulated_generate_name_gets_five_random_characters(tmp_path):
    async with emulated_api(tmp_path) as cluster:
        created = await cluster.client.create(PODS, {"metadata": {"generateName": "web-abc-"}, "spec": {"containers": []}})
        name = created["metadata"]["name"]
        assert name.startswith("web-abc-") and len(name) == len("web-abc-") + 5


async def test_emulated_crd_created_through_the_api_is_served(tmp_path):
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {"type": "object"}}}],
        },
    }
    async with emulated_api(tmp_path) as cluster:
        await cluster.client.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        _, discovery = await call(cluster, "GET", "/apis/example.com/v1")
        assert [(r["name"], r["kind"], r["namespaced"]) for r in discovery["resources"]] == [("widgets", "Widget", True)]
        created = await cluster.client.create(object_path("example.com/v1", "widgets", "default"), {"metadata": {"name": "w"}})
        assert created["kind"] == "Widget" and created["apiVersion"] == "example.com/v1"


async def test_emulated_discovery_describes_the_scale_subresource_as_autoscaling_scale(tmp_path):
    async with emulated_api(tmp_path) as cluster:
        _, discovery = await call(cluster, "GET", "/apis/shoal.dev/v1alpha1")
        entries = {r["name"]: r for r in discovery["resources"]}
        assert entries["modelpools"]["shortNames"] == ["mp"]
        assert (entries["modelpools/scale"]["group"], entries["modelpools/scale"]["version"], entries["modelpools/scale"]["kind"]) == ("autoscaling", "v1", "Scale")
        assert entries["modelpools/status"]["shortNames"] == []


async def test_emulated_refusals_are_kubernetes_status_errors(tmp_path):
    async with emulated_api(tmp_path) as cluster:
        await cluster.client.create(POOLS, pool("a"))
        status, body = await call(cluster, "GET", "/apis/shoal.dev/v1alpha1/namespaces/default/gadgets")
        assert (status, body["reason"]) == (404, "NotFound")
        status, body = await call(cluster, "POST", POOLS, pool("a"))
        assert (status, body["reason"]) == (409, "AlreadyExists")
        status, body = await call(cluster, "PATCH", f"{POOLS}/a", {}, "application/apply-patch+yaml")
        assert (status, body["reason"]) == (415, "UnsupportedMediaType")
        status, body = await call(cluster, "DELETE", f"{POOLS}/a", {"propagationPolicy": "Orphan"})
        assert (status, body["reason"]) == (422, "Invalid")
        status, body = await call(cluster, "GET", f"{POOLS}?labelSelector=a+in+b")
        assert (status, body["reason"]) == (400, "BadRequest")


async def test_emulated_server_stop_ends_open_watches_cleanly():
    async with aiohttp.ClientSession() as session:
        async with serving(EmulatedApiServer()) as url:
            response = await session.get(f"{url}/api/v1/namespaces?watch=true")
            first = json.loads(await response.content.readline())
            assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "default")
        # The stream was ended, not cut: a cut one fails to read (the payload is not completed).
        assert await asyncio.wait_for(response.content.read(), timeout=5) == b""
        response.release()
