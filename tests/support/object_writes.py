"""How the emulated API server turns a write into the object it stores, as the real one does:
system metadata on create, what a write to the main resource or to /status may change, when
metadata.generation moves, deletion marks, and the autoscaling/v1 Scale view of an object.

Pure functions: the caller passes the uid, the time and the next resourceVersion in; the given
objects are never modified.
"""

import copy
import datetime
from collections.abc import Mapping
from typing import Any

from tests.support.crd_resources import ScalePaths

# Metadata that the server owns: whatever a client sends for these on an update is ignored.
_SERVER_METADATA = (
    "name", "namespace", "uid", "creationTimestamp", "resourceVersion", "generation",
    "deletionTimestamp", "deletionGracePeriodSeconds",
)  # fmt: skip

Obj = dict[str, Any]


def timestamp(moment: datetime.datetime) -> str:
    """RFC 3339 in UTC with seconds, as Kubernetes writes metadata times."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def created(
    body: Mapping[str, Any],
    *,
    api_version: str,
    kind: str,
    name: str,
    namespace: str | None,
    uid: str,
    now: str,
    resource_version: int,
    status_subresource: bool,
    initial_status: Mapping[str, Any] | None = None,
) -> Obj:
    """The stored form of a created object. Where status is a subresource, the client's status is
    dropped (a controller writes it), and some kinds start with one (a Pod is Pending)."""
    obj = copy.deepcopy(dict(body))
    obj["apiVersion"], obj["kind"] = api_version, kind
    metadata = {key: value for key, value in obj.get("metadata", {}).items() if key not in _SERVER_METADATA}
    metadata.update(name=name, uid=uid, creationTimestamp=now, resourceVersion=str(resource_version), generation=1)
    if namespace is not None:
        metadata["namespace"] = namespace
    obj["metadata"] = metadata
    if status_subresource:
        obj.pop("status", None)
        if initial_status is not None:
            obj["status"] = copy.deepcopy(dict(initial_status))
    return obj


def updated(old: Mapping[str, Any], new: Mapping[str, Any], *, resource_version: int, status_subresource: bool) -> Obj | None:
    """A write to the main resource: the server's metadata stays, and so does .status where it is
    a subresource; generation moves when anything else but metadata (and such status) changes.
    None when the write changes nothing (no new resourceVersion, no watch event)."""
    result = copy.deepcopy(dict(new))
    result["apiVersion"], result["kind"] = old["apiVersion"], old["kind"]
    metadata = {key: value for key, value in result.get("metadata", {}).items() if key not in _SERVER_METADATA}
    metadata.update({key: old["metadata"][key] for key in _SERVER_METADATA if key in old["metadata"]})
    result["metadata"] = metadata
    if status_subresource:
        result.pop("status", None)
        if "status" in old:
            result["status"] = copy.deepcopy(old["status"])
    return _stamped(old, result, resource_version)


def status_updated(old: Mapping[str, Any], new: Mapping[str, Any], *, resource_version: int) -> Obj | None:
    """A write to /status: only .status changes; None when it does not."""
    result = copy.deepcopy(dict(old))
    result.pop("status", None)
    if "status" in new:
        result["status"] = copy.deepcopy(new["status"])
    return _stamped(old, result, resource_version)


def marked_for_deletion(old: Mapping[str, Any], *, deletion_time: str, grace_seconds: int, resource_version: int) -> Obj:
    """Deletion that waits: for finalizers to go, or for a kubelet to stop a pod's containers."""
    result = copy.deepcopy(dict(old))
    result["metadata"].update(deletionTimestamp=deletion_time, deletionGracePeriodSeconds=grace_seconds)
    result["metadata"]["resourceVersion"] = str(resource_version)
    return result


def scale_of(obj: Mapping[str, Any], paths: ScalePaths) -> Obj:
    """The object seen through its scale subresource (autoscaling/v1 Scale)."""
    metadata = obj["metadata"]
    status: Obj = {"replicas": get_path(obj, paths.status_replicas) or 0}
    selector = get_path(obj, paths.label_selector) if paths.label_selector else None
    if selector is not None:
        status["selector"] = selector
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {key: metadata[key] for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if key in metadata},
        "spec": {"replicas": get_path(obj, paths.spec_replicas) or 0},
        "status": status,
    }  # fmt: skip


def scaled(obj: Mapping[str, Any], paths: ScalePaths, replicas: int) -> Obj:
    """The object with the replica count a Scale write asks for (then stored as an update)."""
    result = copy.deepcopy(dict(obj))
    node = result
    for key in paths.spec_replicas[:-1]:
        node = node.setdefault(key, {})
    node[paths.spec_replicas[-1]] = replicas
    return result


def get_path(obj: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = obj
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _stamped(old: Mapping[str, Any], result: Obj, resource_version: int) -> Obj | None:
    if result == old:
        return None
    if _generation_tracked(result) != _generation_tracked(old):
        result["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
    result["metadata"]["resourceVersion"] = str(resource_version)
    return result


def _generation_tracked(obj: Mapping[str, Any]) -> Obj:
    """What metadata.generation counts changes of: everything but metadata and status."""
    return {key: value for key, value in obj.items() if key not in ("metadata", "status")}
