"""The patch types the emulated API server takes: RFC 7386 merge patch, JSON patch, and the part
of strategic merge patch that kubectl sends for core kinds."""

import pytest

from tests.support.patches import JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, PatchError, apply_patch, merge_patch, strategic_merge_patch

POD_SPEC = {
    "containers": [
        {"name": "a", "image": "a:1", "ports": [{"containerPort": 80, "name": "http"}], "env": [{"name": "X", "value": "1"}]},
        {"name": "b", "image": "b:1"},
    ]
}


def test_emulated_merge_patch_merges_objects_deletes_on_null_and_replaces_the_rest():
    target = {"spec": {"replicas": 1, "model": {"revision": "r1", "dtype": "auto"}, "args": ["x"]}, "keep": True}
    patch = {"spec": {"model": {"revision": "r2", "dtype": None}, "args": ["y", "z"], "new": {"a": None, "b": 1}}}
    assert merge_patch(target, patch) == {"spec": {"replicas": 1, "model": {"revision": "r2"}, "args": ["y", "z"], "new": {"b": 1}}, "keep": True}
    assert target["spec"]["model"] == {"revision": "r1", "dtype": "auto"}  # not modified in place


def test_emulated_merge_patch_replaces_a_scalar_with_an_object_and_back():
    assert merge_patch({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}
    assert merge_patch({"a": {"b": 2}}, {"a": 3}) == {"a": 3}


def test_emulated_strategic_merge_patch_merges_containers_by_name():
    patch = {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}], "containers": [{"name": "a", "image": "a:2"}]}
    merged = strategic_merge_patch(POD_SPEC, patch)
    assert merged["containers"][0] == {"name": "a", "image": "a:2", "ports": [{"containerPort": 80, "name": "http"}], "env": [{"name": "X", "value": "1"}]}
    assert merged["containers"][1] == {"name": "b", "image": "b:1"}


def test_emulated_strategic_merge_patch_follows_kubectls_directives():
    patch = {
        "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
        "containers": [{"name": "a", "env": [{"name": "X", "$patch": "delete"}, {"name": "Y", "value": "2"}]}],
    }
    merged = strategic_merge_patch(POD_SPEC, patch)
    assert [c["name"] for c in merged["containers"]] == ["b", "a"]
    assert merged["containers"][1]["env"] == [{"name": "Y", "value": "2"}]

    assert strategic_merge_patch({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}, {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}) == {"strategy": {"type": "Recreate"}}
    assert strategic_merge_patch({"template": {"a": 1, "b": 2}}, {"template": {"$patch": "replace", "c": 3}}) == {"template": {"c": 3}}
    assert strategic_merge_patch({"finalizers": ["x", "y"]}, {"finalizers": ["z"], "$deleteFromPrimitiveList/finalizers": ["x"]}) == {"finalizers": ["y", "z"]}


def test_emulated_strategic_merge_patch_merges_container_ports_on_containerport_and_replaces_unkeyed_lists():
    patch = {"containers": [{"name": "a", "ports": [{"containerPort": 81}], "args": ["--new"]}]}
    merged = strategic_merge_patch({"containers": [{"name": "a", "ports": [{"containerPort": 80}], "args": ["--old"]}]}, patch)
    assert merged["containers"][0]["ports"] == [{"containerPort": 80}, {"containerPort": 81}]
    assert merged["containers"][0]["args"] == ["--new"]


def test_emulated_strategic_merge_patch_needs_the_merge_key_in_every_item():
    with pytest.raises(PatchError, match="merge key 'name'"):
        strategic_merge_patch(POD_SPEC, {"containers": [{"image": "nameless"}]})


def test_emulated_json_patch_and_unsupported_types():
    assert apply_patch(JSON_PATCH, {"a": {"b": 1}}, [{"op": "replace", "path": "/a/b", "value": 2}]) == {"a": {"b": 2}}
    assert apply_patch(MERGE_PATCH, {"a": 1}, {"a": None}) == {}
    assert apply_patch(STRATEGIC_MERGE_PATCH, POD_SPEC, {})["containers"] == POD_SPEC["containers"]
    with pytest.raises(PatchError):
        apply_patch(JSON_PATCH, {"a": 1}, [{"op": "remove", "path": "/missing"}])
    with pytest.raises(PatchError):
        apply_patch(MERGE_PATCH, {"a": 1}, ["not", "an", "object"])
    with pytest.raises(ValueError, match="unsupported patch type"):
        apply_patch("application/apply-patch+yaml", {}, {})
