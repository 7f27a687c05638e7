"""The write rules of the emulated API server, as pure functions: what a create stores, what a
write to the main resource, to /status and to /scale may change, and when generation moves."""

from pathlib import Path

import yaml

from tests.support import object_writes
from tests.support.api_paths import ApiPath, object_path, parse_api_path
from tests.support.crd_resources import ScalePaths, served_resources

POOL_SCALE = ScalePaths(spec_replicas=("spec", "replicas"), status_replicas=("status", "replicas"), label_selector=("status", "selector"))


def stored_pool(**fields) -> dict:
    body = {"metadata": {"name": "chat", "uid": "forged", "labels": {"a": "1"}}, "spec": {"replicas": 1}, "status": {"phase": "forged"}, **fields}
    return object_writes.created(
        body, api_version="shoal.dev/v1alpha1", kind="ModelPool", name="chat", namespace="default",
        uid="u-1", now="2030-01-01T00:00:00Z", resource_version=7, status_subresource=True,
    )  # fmt: skip


def test_emulated_create_fills_server_metadata_and_drops_a_status_subresources_status():
    pool = stored_pool()
    assert pool["metadata"] == {
        "name": "chat", "namespace": "default", "labels": {"a": "1"}, "uid": "u-1",
        "creationTimestamp": "2030-01-01T00:00:00Z", "resourceVersion": "7", "generation": 1,
    }  # fmt: skip
    assert "status" not in pool and pool["kind"] == "ModelPool" and pool["apiVersion"] == "shoal.dev/v1alpha1"


def test_emulated_main_resource_write_keeps_status_and_server_metadata_and_moves_generation_on_spec():
    old = {**stored_pool(), "status": {"phase": "Ready"}}
    new = {"metadata": {"name": "chat", "uid": "other", "generation": 99, "labels": {"a": "2"}}, "spec": {"replicas": 3}, "status": {"phase": "forged"}}
    result = object_writes.updated(old, new, resource_version=8, status_subresource=True)
    assert result["status"] == {"phase": "Ready"} and result["spec"] == {"replicas": 3}
    assert result["metadata"]["uid"] == "u-1" and result["metadata"]["labels"] == {"a": "2"}
    assert result["metadata"]["generation"] == 2 and result["metadata"]["resourceVersion"] == "8"

    relabelled = object_writes.updated(old, {**old, "metadata": {**old["metadata"], "labels": {"b": "1"}}}, resource_version=9, status_subresource=True)
    assert relabelled["metadata"]["generation"] == 1 and relabelled["metadata"]["resourceVersion"] == "9"
    assert object_writes.updated(old, old, resource_version=10, status_subresource=True) is None


def test_emulated_status_write_changes_status_only_and_not_generation():
    old = stored_pool()
    result = object_writes.status_updated(old, {"metadata": {"labels": {"x": "y"}}, "spec": {"replicas": 5}, "status": {"phase": "Ready"}}, resource_version=8)
    assert result["status"] == {"phase": "Ready"}
    assert result["spec"] == old["spec"] and result["metadata"]["labels"] == {"a": "1"}
    assert result["metadata"]["generation"] == 1 and result["metadata"]["resourceVersion"] == "8"
    assert object_writes.status_updated(result, result, resource_version=9) is None


def test_emulated_scale_view_and_scaled_object():
    pool = {**stored_pool(), "spec": {"replicas": 2}, "status": {"replicas": 1, "selector": "shoal.dev/pool=chat"}}
    scale = object_writes.scale_of(pool, POOL_SCALE)
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 2} and scale["status"] == {"replicas": 1, "selector": "shoal.dev/pool=chat"}
    assert scale["metadata"]["uid"] == "u-1"
    assert object_writes.scaled(pool, POOL_SCALE, 5)["spec"] == {"replicas": 5}


def test_emulated_modelpool_crd_serves_its_version_with_status_and_scale():
    crd = yaml.safe_load((Path(__file__).resolve().parents[2] / "crds" / "modelpool.yaml").read_text())
    [served] = served_resources(crd)
    assert (served.resource.group, served.resource.version, served.resource.plural) == ("shoal.dev", "v1alpha1", "modelpools")
    assert served.info.kind == "ModelPool" and served.info.shortnames == {"mp"} and served.info.namespaced
    assert served.info.subresources == {"status", "scale"}
    assert served.scale == POOL_SCALE


def test_emulated_api_paths_know_namespaces_are_a_resource_too():
    assert parse_api_path("/api/v1/namespaces") == ApiPath("", "v1", "namespaces")
    assert parse_api_path("/api/v1/namespaces/team") == ApiPath("", "v1", "namespaces", name="team")
    assert parse_api_path("/api/v1/namespaces/team/status") == ApiPath("", "v1", "namespaces", name="team", subresource="status")
    assert parse_api_path("/api/v1/namespaces/team/pods/p/status") == ApiPath("", "v1", "pods", "team", "p", "status")
    assert parse_api_path("/apis/shoal.dev/v1alpha1/modelpools") == ApiPath("shoal.dev", "v1alpha1", "modelpools")
    assert parse_api_path("/apis/shoal.dev/v1alpha1") is None and parse_api_path("/api/v1") is None and parse_api_path("/version") is None
    assert object_path("apps/v1", "deployments", "team", "web", "status") == "/apis/apps/v1/namespaces/team/deployments/web/status"
    assert object_path("v1", "pods") == "/api/v1/pods"
