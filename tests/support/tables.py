"""Server-side printing of custom resources, as `kubectl get` asks for it: a meta.k8s.io/v1 Table
whose columns are Name and the CRD version's additionalPrinterColumns (Name and Age if it names
none), with cells filled from each object and dates shown as ages ("42s", "5m3s"), as the API
server's apiextensions table converter does.

The columns come from the CRD as crd_resources.py reads it: dotted jsonPaths only (`.status.phase`),
any other refused when the CRD is registered, so a printer column is never silently left blank.
"""

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from tests.support.crd_resources import PrinterColumn

_NAME = {"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}  # fmt: skip


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

