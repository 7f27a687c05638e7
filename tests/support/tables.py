"""Server-side printing of custom resources, as `kubectl get` asks for it: a meta.k8s.io/v1 Table
whose columns are Name and the CRD version's additionalPrinterColumns (Name and Age if it names
none), with cells filled from each object and dates shown as ages ("42s", "5m3s"), as the API
server's apiextensions table converter does.

Only simple dotted jsonPaths (`.status.phase`) are supported; a CRD with any other is refused
when it is registered, so a printer column is never silently left blank here.
"""

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_NAME = {"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}  # fmt: skip
_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: str  # integer, number, string, boolean or date
    path: tuple[str, ...]  # keys from the object's root
    description: str = ""
    priority: int = 0  # kubectl shows priority > 0 only with -o wide

    def definition(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "format": "", "description": self.description, "priority": self.priority}


def printer_columns(version: Mapping[str, Any]) -> tuple[PrinterColumn, ...]:
    """The columns of one CRD version; ValueError for a jsonPath this module cannot follow."""
    return tuple(
        PrinterColumn(
            name=column["name"],
            type=column["type"],
            path=_dotted(column["jsonPath"]),
            description=column.get("description", ""),
            priority=column.get("priority", 0),
        )
        for column in version.get("additionalPrinterColumns") or [_AGE]
    )


def wants_table(accept: str) -> bool:
    """Whether a request's Accept header asks for a meta.k8s.io/v1 Table (kubectl get does)."""
    for media_type in accept.split(","):
        parameters = dict(part.strip().partition("=")[::2] for part in media_type.split(";")[1:])
        if parameters.get("as") == "Table" and parameters.get("g") == "meta.k8s.io" and parameters.get("v") == "v1":
            return True
    return False


def table_of(objects: Iterable[Mapping[str, Any]], columns: tuple[PrinterColumn, ...], resource_version: str, now: datetime.datetime) -> dict[str, Any]:  # fmt: skip
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [_NAME, *(column.definition() for column in columns)],
        "rows": [
            {
                "cells": [obj["metadata"]["name"], *(_cell(obj, column, now) for column in columns)],
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]},
            }
            for obj in objects
        ],
    }


def human_age(since: datetime.datetime, now: datetime.datetime) -> str:
    """Kubernetes' HumanDuration, up to a year: 42s, 5m3s, 47m, 3h12m, 30h, 3d4h, 120d."""
    seconds = int((now - since).total_seconds())
    if seconds < -1:
        return "<invalid>"
    seconds = max(seconds, 0)
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


def _cell(obj: Mapping[str, Any], column: PrinterColumn, now: datetime.datetime) -> Any:
    value: Any = obj
    for key in column.path:
        if not isinstance(value, Mapping) or key not in value:
            return None  # kubectl prints <none>
        value = value[key]
    if column.type == "date" and isinstance(value, str):
        return human_age(datetime.datetime.fromisoformat(value), now)
    return value


def _dotted(path: str) -> tuple[str, ...]:
    if not path.startswith(".") or any(c in path for c in "[]()@*?"):
        raise ValueError(f"unsupported printer column jsonPath {path!r}: the emulator follows dotted paths like .status.phase only")  # fmt: skip
    return tuple(path[1:].split("."))
