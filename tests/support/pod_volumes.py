"""A pod's volumes as files on disk: what each volume holds (pure), and writing it into the pod's
folder on the node (<state dir>/<pod>/volumes/<volume name>/), from where pod_sandbox.py
bind-mounts it at its mountPath.

Supported: configMap and secret (all keys, or `items` with their paths and modes; defaultMode;
optional), emptyDir (an empty folder; medium and sizeLimit are not enforced), downwardAPI
(fieldRef of metadata.name/namespace/uid/labels/annotations, resourceFieldRef) and projected
(configMap, secret, downwardAPI and serviceAccountToken sources: the token from the TokenRequest
API, bound to the pod, which is how a pod's kube-api-access volume gets its token). Files are
written once, when the pod starts: a rotated token or a changed ConfigMap is not refreshed (the
kubelet would), and files are plain files, not the kubelet's `..data` symlinks.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.pod_env import Placement, field_value, resource_value
from tests.support.pod_references import MissingReference, PodObjects, token_spec

VOLUME_TYPES = ("configMap", "secret", "emptyDir", "downwardAPI", "projected")
PROJECTED_SOURCES = ("configMap", "secret", "downwardAPI", "serviceAccountToken")
READ_ONLY_TYPES = ("configMap", "secret", "downwardAPI", "projected")  # the kubelet mounts these read-only
DEFAULT_MODE = 0o644


@dataclass(frozen=True)
class VolumeFile:
    data: bytes
    mode: int


def volume_type(volume: Mapping[str, Any]) -> str:
    """`configMap`, `hostPath`...: the volume's one key besides its name."""
    return next((key for key in volume if key != "name"), "")


def volume_files(
    pod: Mapping[str, Any], volume: Mapping[str, Any], objects: PodObjects, placement: Placement
) -> dict[str, VolumeFile]:
    """What the volume holds, by path inside it ({} for an emptyDir); MissingReference when a
    required ConfigMap, Secret, key or token is not there."""
    kind = volume_type(volume)
    source = volume[kind] or {}
    mode = source.get("defaultMode", DEFAULT_MODE)
    if kind == "configMap":
        return _keyed_files("configmap", source["name"], source, objects, mode)
    if kind == "secret":
        return _keyed_files("secret", source["secretName"], source, objects, mode)
    if kind == "downwardAPI":
        return _downward_files(pod, source, placement, mode)
    if kind == "projected":
        files: dict[str, VolumeFile] = {}
        for projection in source.get("sources") or []:
            files |= _projected_files(pod, projection, objects, placement, mode)
        return files
    return {}  # emptyDir


def write_volume(directory: Path, files: Mapping[str, VolumeFile]) -> None:
    # Writable by anyone, as the kubelet makes an emptyDir (a pod may run as any user); the
    # other volumes are mounted read-only anyway.
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o777)
    for relative, file in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(file.data)
        os.chmod(path, file.mode)


def _projected_files(
    pod: Mapping[str, Any], projection: Mapping[str, Any], objects: PodObjects, placement: Placement, mode: int
) -> dict[str, VolumeFile]:
    if "configMap" in projection:
        return _keyed_files("configmap", projection["configMap"]["name"], projection["configMap"], objects, mode)
    if "secret" in projection:
        return _keyed_files("secret", projection["secret"]["name"], projection["secret"], objects, mode)
    if "downwardAPI" in projection:
        return _downward_files(pod, projection["downwardAPI"], placement, mode)
    token = projection["serviceAccountToken"]
    return {token["path"]: VolumeFile(objects.token(token_spec(token)).encode(), mode)}


def _keyed_files(
    kind: str, name: str, source: Mapping[str, Any], objects: PodObjects, mode: int
) -> dict[str, VolumeFile]:
    optional = source.get("optional", False)
    data = objects.data(kind, name, optional=optional, reason="ContainerCreating")
    items = source.get("items")
    if items is None:
        return {key: VolumeFile(value, mode) for key, value in data.items()}
    files = {}
    for item in items:
        if item["key"] in data:
            files[item["path"]] = VolumeFile(data[item["key"]], item.get("mode", mode))
        elif not optional:
            raise MissingReference("ContainerCreating", f'couldn\'t find key {item["key"]} in {kind} "{name}"')
    return files


def _downward_files(
    pod: Mapping[str, Any], source: Mapping[str, Any], placement: Placement, mode: int
) -> dict[str, VolumeFile]:
    files = {}
    for item in source.get("items") or []:
        if "fieldRef" in item:
            value = field_value(pod, item["fieldRef"]["fieldPath"], placement)
        else:
            ref = item["resourceFieldRef"]
            value = resource_value(pod, ref["containerName"], ref["resource"], ref.get("divisor", "1"), placement)
        files[item["path"]] = VolumeFile(value.encode(), item.get("mode", mode))
    return files
