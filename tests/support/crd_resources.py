"""What a CustomResourceDefinition makes the API server serve: one resource per served version,
with its discovery facts, its printer columns and, where declared, where its scale subresource
reads and writes."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kmock import ResourceInfo, resource

_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
# A CRD version without printer columns is printed with Name and this (tables.py adds Name).
_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


@dataclass(frozen=True)
class ScalePaths:
    """Where `autoscaling/v1` Scale's fields live in the object (paths of keys)."""

    spec_replicas: tuple[str, ...]
    status_replicas: tuple[str, ...]
    label_selector: tuple[str, ...] | None


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: str  # integer, number, string, boolean or date
    path: tuple[str, ...]  # keys from the object's root
    description: str = ""
    priority: int = 0  # kubectl shows priority > 0 only with -o wide

    def definition(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "format": "", "description": self.description, "priority": self.priority}


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
                spec_replicas=json_path(scale["specReplicasPath"], "scale path"),
                status_replicas=json_path(scale["statusReplicasPath"], "scale path"),
                label_selector=json_path(scale["labelSelectorPath"], "scale path") if scale.get("labelSelectorPath") else None,
            ),
            columns=printer_columns(version),
        ))  # fmt: skip
    return served


def printer_columns(version: Mapping[str, Any]) -> tuple[PrinterColumn, ...]:
    """The columns of one CRD version; ValueError for a jsonPath the emulator cannot follow."""
    return tuple(
        PrinterColumn(
            name=column["name"],
            type=column["type"],
            path=json_path(column["jsonPath"], "printer column jsonPath"),
            description=column.get("description", ""),
            priority=column.get("priority", 0),
        )
        for column in version.get("additionalPrinterColumns") or [_AGE]
    )


def json_path(path: str, what: str) -> tuple[str, ...]:
    """`.spec.replicas` -> ("spec", "replicas"); filters, wildcards and indexes are refused."""
    if not path.startswith(".") or any(c in path for c in "[]()@*?"):
        raise ValueError(f"unsupported {what} {path!r}: the emulator follows dotted paths like .spec.replicas only")
    return tuple(path[1:].split("."))
