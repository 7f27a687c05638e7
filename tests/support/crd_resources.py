"""What a CustomResourceDefinition makes the API server serve: one resource per served version,
with its discovery facts, its printer columns and, where declared, where its scale subresource
reads and writes."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kmock import ResourceInfo, resource

from tests.support.tables import PrinterColumn, printer_columns

_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ScalePaths:
    """Where `autoscaling/v1` Scale's fields live in the object (paths of keys)."""

    spec_replicas: tuple[str, ...]
    status_replicas: tuple[str, ...]
    label_selector: tuple[str, ...] | None


@dataclass(frozen=True)
class ServedResource:
    resource: resource
    info: ResourceInfo
    scale: ScalePaths | None
    columns: tuple[PrinterColumn, ...]


def served_resources(crd: Mapping[str, Any]) -> list[ServedResource]:
    spec = crd["spec"]
    names = spec["names"]
    served = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        scale = subresources.get("scale")
        served.append(ServedResource(
            resource=resource(spec["group"], version["name"], names["plural"]),
            info=ResourceInfo(
                kind=names["kind"],
                singular=names.get("singular") or names["kind"].lower(),
                namespaced=spec["scope"] == "Namespaced",
                verbs=_VERBS,
                shortnames=names.get("shortNames") or (),
                categories=names.get("categories") or (),
                subresources=subresources.keys(),
            ),
            scale=None if scale is None else ScalePaths(
                spec_replicas=json_path(scale["specReplicasPath"]),
                status_replicas=json_path(scale["statusReplicasPath"]),
                label_selector=json_path(scale["labelSelectorPath"]) if scale.get("labelSelectorPath") else None,
            ),
            columns=printer_columns(version),
        ))  # fmt: skip
    return served


def json_path(path: str) -> tuple[str, ...]:
    """`.spec.replicas` -> ("spec", "replicas"); CRDs allow only such simple paths here."""
    if not path.startswith(".") or "[" in path:
        raise ValueError(f"unsupported scale path {path!r}: expected a dotted path like .spec.replicas")
    return tuple(path[1:].split("."))
