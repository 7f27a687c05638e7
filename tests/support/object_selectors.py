"""Label and field selectors as list and watch requests carry them (`?labelSelector=app=x,tier in
(a,b)`, `?fieldSelector=metadata.name=x`), and a LabelSelector object written as such a string."""

import re
from collections.abc import Callable, Mapping
from typing import Any

Matcher = Callable[[Mapping[str, Any]], bool]

_SET_REQUIREMENT = re.compile(r"^(?P<key>[^\s!=(),]+)\s+(?P<op>in|notin)\s+\((?P<values>[^)]*)\)$")
_EQUALITY = re.compile(r"^(?P<key>[^\s!=(),]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=(),]*)$")
_EXISTS = re.compile(r"^(?P<negated>!?)\s*(?P<key>[^\s!=(),]+)$")


class SelectorError(ValueError):
    """A selector that does not parse (the API server answers 400)."""


def label_matcher(selector: str) -> Matcher:
    """Whether an object's metadata.labels satisfy every requirement of the selector."""
    tests = [_label_requirement(part) for part in _split(selector)]
    return lambda obj: all(test(obj.get("metadata", {}).get("labels") or {}) for test in tests)


def field_matcher(selector: str) -> Matcher:
    """Whether an object's fields (dotted paths; absent reads as "") satisfy the selector."""
    tests: list[Matcher] = []
    for part in _split(selector):
        match = _EQUALITY.match(part)
        if match is None:
            raise SelectorError(f"invalid field selector requirement {part!r}")
        path, wanted, equal = match["key"].split("."), match["value"], match["op"] != "!="
        tests.append(lambda obj, path=path, wanted=wanted, equal=equal: (_field(obj, path) == wanted) == equal)
    return lambda obj: all(test(obj) for test in tests)


def selector_query(label_selector: Mapping[str, Any]) -> str:
    """A LabelSelector object (matchLabels, matchExpressions) as a `labelSelector` string."""
    parts = [f"{key}={value}" for key, value in (label_selector.get("matchLabels") or {}).items()]
    for expression in label_selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator in ("In", "NotIn"):
            parts.append(f"{key} {operator.lower()} ({','.join(values)})")
        elif operator == "Exists":
            parts.append(key)
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            raise SelectorError(f"matchExpressions operator {operator!r}: expected In, NotIn, Exists, DoesNotExist")
    return ",".join(parts)


def _label_requirement(part: str) -> Callable[[Mapping[str, str]], bool]:
    if match := _SET_REQUIREMENT.match(part):
        key, values = match["key"], {value.strip() for value in match["values"].split(",") if value.strip()}
        if match["op"] == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if match := _EQUALITY.match(part):
        key, value = match["key"], match["value"]
        if match["op"] == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if match := _EXISTS.match(part):
        key, negated = match["key"], bool(match["negated"])
        return lambda labels: (key in labels) != negated
    raise SelectorError(f"invalid label selector requirement {part!r}")


def _split(selector: str) -> list[str]:
    """Requirements are separated by commas, except the commas inside `in (a,b)`."""
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return [part for part in parts if part]


def _field(obj: Mapping[str, Any], path: list[str]) -> str:
    value: Any = obj
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
