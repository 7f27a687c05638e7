"""How the emulated API server applies a PATCH body: JSON merge patch (RFC 7386), JSON patch
(RFC 6902), and the part of Kubernetes' strategic merge patch that kubectl sends for core kinds.

Pure functions over JSON-like values; the inputs are never modified.
"""

import copy
from collections.abc import Mapping
from typing import Any

import jsonpatch

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
SUPPORTED = (MERGE_PATCH, JSON_PATCH, STRATEGIC_MERGE_PATCH)

# Lists that a strategic merge patch merges item by item, matched on a key, as the Kubernetes Go
# types declare them (patchStrategy=merge, patchMergeKey=...). Every other list is replaced whole.
# Only fields of the kinds these tests create (Pod, Deployment, object metadata) are listed.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "ownerReferences": "uid",
    "conditions": "type",
    "hostAliases": "ip",
}
# Lists of scalars that a strategic merge patch unites instead of replacing.
_MERGED_SCALAR_LISTS = {"finalizers"}
_CONTAINER_LISTS = {"containers", "initContainers", "ephemeralContainers"}


class PatchError(ValueError):
    """The patch cannot be applied to this object (the API server answers 422)."""


def apply_patch(content_type: str, target: Mapping[str, Any], patch: Any) -> dict[str, Any]:
    """The object after the patch; `content_type` is one of SUPPORTED."""
    if content_type == JSON_PATCH:
        if not isinstance(patch, list):
            raise PatchError("a JSON patch is a list of operations")
        try:
            return jsonpatch.apply_patch(copy.deepcopy(dict(target)), patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as error:
            raise PatchError(str(error)) from None
    if not isinstance(patch, Mapping):
        raise PatchError("a merge patch is a JSON object")
    if content_type == MERGE_PATCH:
        return merge_patch(target, patch)
    if content_type == STRATEGIC_MERGE_PATCH:
        return strategic_merge_patch(target, patch)
    raise ValueError(f"unsupported patch type {content_type!r}; supported: {', '.join(SUPPORTED)}")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null deletes a key, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch in which the lists in _MERGE_KEYS merge by key, with the directives kubectl
    writes: `$patch: replace|delete`, `$retainKeys`, `$setElementOrder/<list>`, and
    `$deleteFromPrimitiveList/<list>`."""
    return _merge_map(target, patch, path=())


def _merge_map(target: Any, patch: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    directive = patch.get("$patch")
    plain = {key: value for key, value in patch.items() if not key.startswith("$")}
    if directive == "delete":
        return None
    if directive == "replace":
        return copy.deepcopy(plain)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in plain.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            merged = _merge_map(result.get(key), value, (*path, key))
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, (*path, key))
        else:
            result[key] = value
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [item for item in result.get(field, []) if item not in value]
        elif key.startswith("$setElementOrder/"):
            field = key.split("/", 1)[1]
            if field in result:
                result[field] = _ordered(result[field], value, _merge_key((*path, field)))
    if "$retainKeys" in patch:
        result = {key: value for key, value in result.items() if key in patch["$retainKeys"]}
    return result


def _merge_list(target: Any, patch: list[Any], path: tuple[str, ...]) -> list[Any]:
    current = list(target) if isinstance(target, list) else []
    if path[-1] in _MERGED_SCALAR_LISTS:
        return current + [item for item in patch if item not in current]
    key = _merge_key(path)
    if key is None or any(isinstance(item, Mapping) and item.get("$patch") == "replace" for item in patch):
        return [_without_directives(item) for item in patch if not _is_directive(item)]
    for item in patch:
        if not isinstance(item, Mapping) or key not in item:
            raise PatchError(f"{'.'.join(path)}: every item needs its merge key {key!r}")
        index = next((i for i, old in enumerate(current) if isinstance(old, Mapping) and old.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del current[index]
        elif index is None:
            current.append(_without_directives(item))
        else:
            current[index] = _merge_map(current[index], item, path)
    return current


def _merge_key(path: tuple[str, ...]) -> str | None:
    # `ports` merges on containerPort inside a container and on port in a Service.
    if path[-1] == "ports":
        return "containerPort" if _CONTAINER_LISTS & set(path) else "port"
    return _MERGE_KEYS.get(path[-1])


def _ordered(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    """The listed items first, in the given order, then the others as they were (a simplification
    of the real interleaving, which only matters for items that the patch does not mention)."""
    def identity(item: Any) -> Any:
        return item.get(key) if key and isinstance(item, Mapping) else item

    if any(isinstance(identity(item), (Mapping, list)) for item in [*items, *order]):
        return items  # a list of objects with no merge key known here was replaced whole
    rank = {identity(item): position for position, item in enumerate(order)}
    return sorted(items, key=lambda item: rank.get(identity(item), len(rank)))


def _is_directive(item: Any) -> bool:
    return isinstance(item, Mapping) and set(item) == {"$patch"}


def _without_directives(item: Any) -> Any:
    if isinstance(item, Mapping):
        return {key: _without_directives(value) for key, value in item.items() if not key.startswith("$")}
    return copy.deepcopy(item)
