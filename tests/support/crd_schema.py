"""What the API server does with a custom resource on create, for a structural CRD schema: strict
decoding (unknown fields), defaulting, the OpenAPI checks, then the x-kubernetes-validations CEL
rules, with its error messages. No API server runs in tests, so this stands in for one.

It implements exactly the schema keywords our CRDs use; `Crd.from_manifest` refuses any other, so a
keyword added to a CRD later is never silently unchecked here.
"""

import copy
import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import celpy
import yaml
from celpy import celtypes

_KEYWORDS = frozenset({
    "type", "description", "default", "properties", "required", "additionalProperties", "items",
    "enum", "minimum", "maximum", "minLength", "maxLength", "pattern", "minItems", "maxItems",
    "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys", "x-kubernetes-validations",
})
_RULE_KEYS = frozenset({"rule", "message", "fieldPath", "reason"})
_RULE_REASONS = frozenset({"FieldValueInvalid", "FieldValueRequired", "FieldValueForbidden"})
_FIELD_PATH = re.compile(r"^(\.[A-Za-z_][A-Za-z0-9_]*)+$")
# Every object carries these whatever its schema says; the API server checks them apart.
_IMPLICIT_ROOT_FIELDS = frozenset({"apiVersion", "kind", "metadata"})

# How k8s.io/apimachinery's field.Error writes each reason (the StatusCause reasons a 422 carries).
_REASON_TEXT = {
    "FieldValueRequired": "Required value",
    "FieldValueInvalid": "Invalid value",
    "FieldValueTypeInvalid": "Invalid value",
    "FieldValueNotSupported": "Unsupported value",
    "FieldValueDuplicate": "Duplicate value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueTooLong": "Too long",
    "FieldValueTooMany": "Too many",
}
# The API server runs no CEL rule once a schema check fails with one of these: the rules could
# not rely on the object's shape.
_BLOCKING_REASONS = frozenset({
    "FieldValueNotSupported", "FieldValueRequired", "FieldValueTooLong", "FieldValueTooMany", "FieldValueTypeInvalid",
})
_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict, "array": list, "string": str, "integer": int, "number": (int, float), "boolean": bool,
}
_NO_VALUE = object()


@dataclass(frozen=True)
class FieldError:
    """One cause of a rejection, as the API server words it: `spec.replicas: Invalid value: -1: ...`."""

    field: str
    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _error(field: str, reason: str, detail: str = "", value: Any = _NO_VALUE) -> FieldError:
    message = _REASON_TEXT[reason]
    if value is not _NO_VALUE:
        message += f": {json.dumps(value)}"
    if detail:
        message += f": {detail}"
    return FieldError(field, reason, message)


RULES_NOT_CHECKED = _error(
    "<nil>", "FieldValueInvalid",
    "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
    "null",
)


class Rejected(Exception):
    """The API server refused the object; `fields` names where."""

    fields: tuple[str, ...]


class UnknownFields(Rejected):
    """Fields the schema does not declare, under strict field validation (`kubectl apply`'s default): 400."""

    def __init__(self, kind: str, version: str, fields: list[str]):
        self.fields = tuple(fields)
        unknown = ", ".join(f'unknown field "{field}"' for field in fields)
        super().__init__(f'{kind} in version "{version}" cannot be handled as a {kind}: strict decoding error: {unknown}')


class InvalidObject(Rejected):
    """Schema or CEL violations: 422 Unprocessable Entity, one cause per violation."""

    def __init__(self, qualified_kind: str, name: str, causes: list[FieldError]):
        self.causes = tuple(causes)
        self.fields = tuple(cause.field for cause in causes)
        listed = str(causes[0]) if len(causes) == 1 else "[" + ", ".join(map(str, causes)) + "]"
        super().__init__(f'{qualified_kind} "{name}" is invalid: {listed}')


@dataclass(frozen=True)
class Crd:
    group: str
    kind: str
    schemas: Mapping[str, dict]  # served version -> its openAPIV3Schema

    @classmethod
    def from_manifest(cls, crd: Mapping[str, Any]) -> "Crd":
        spec = crd["spec"]
        schemas = {v["name"]: v["schema"]["openAPIV3Schema"] for v in spec["versions"] if v.get("served")}
        for schema in schemas.values():
            _refuse_unimplemented(schema)
        return cls(spec["group"], spec["names"]["kind"], schemas)


def load_crd(path: str | Path) -> Crd:
    return Crd.from_manifest(yaml.safe_load(Path(path).read_text()))


def validate(crd: Crd, manifest: Mapping[str, Any]) -> dict:
    """The object as the API server would store it (defaults applied), or Rejected naming why."""
    group, _, version = manifest.get("apiVersion", "").partition("/")
    if group != crd.group or version not in crd.schemas or manifest.get("kind") != crd.kind:
        raise ValueError(f"not a served {crd.kind}: {manifest.get('apiVersion')} {manifest.get('kind')}")
    schema = crd.schemas[version]
    unknown = unknown_fields(schema, manifest)
    if unknown:
        raise UnknownFields(crd.kind, version, unknown)
    obj = apply_defaults(schema, manifest)
    causes = field_errors(schema, obj)
    if causes:
        raise InvalidObject(f"{crd.kind}.{crd.group}", obj.get("metadata", {}).get("name", ""), causes)
    return obj


def write_validator(crd: Crd) -> Callable[[Mapping[str, Any]], list[FieldError]]:
    """A validation hook for the emulated API server (its `validators`): the schema and CEL errors
    a write of this object would get, defaults applied first. Unknown fields are not errors here:
    the API server prunes them unless the client asks for strict validation, which kubectl's
    --validate=false (that the emulator needs) turns off."""

    def errors(obj: Mapping[str, Any]) -> list[FieldError]:
        version = obj.get("apiVersion", "").partition("/")[2]
        return field_errors(crd.schemas[version], apply_defaults(crd.schemas[version], obj))

    return errors


def walk_schema(schema: dict, path: str = "") -> Iterator[tuple[str, dict]]:
    """Every node of a schema with its JSONPath-like path (`.spec.tenants[*].name`), parents first."""
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from walk_schema(child, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk_schema(schema["additionalProperties"], f"{path}.*")
    if "items" in schema:
        yield from walk_schema(schema["items"], f"{path}[*]")


def _refuse_unimplemented(schema: dict) -> None:
    for path, node in walk_schema(schema):
        unimplemented = node.keys() - _KEYWORDS
        if unimplemented:
            raise NotImplementedError(f"{path or '.'}: schema keywords {sorted(unimplemented)} are not implemented by this validator")
        if node.get("x-kubernetes-list-type", "atomic") not in ("atomic", "map"):
            raise NotImplementedError(f"{path}: x-kubernetes-list-type {node['x-kubernetes-list-type']!r}")
        for rule in node.get("x-kubernetes-validations", ()):
            if rule.keys() - _RULE_KEYS or rule.get("reason", "FieldValueInvalid") not in _RULE_REASONS:
                raise NotImplementedError(f"{path}: validation rule {rule} uses what this validator does not implement")
            if "fieldPath" in rule and not _FIELD_PATH.match(rule["fieldPath"]):
                raise NotImplementedError(f"{path}: fieldPath {rule['fieldPath']!r} (only .a.b paths are implemented)")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _field_schema(schema: dict, name: str) -> dict | None:
    field = schema.get("properties", {}).get(name)
    if field is None and isinstance(schema.get("additionalProperties"), dict):
        return schema["additionalProperties"]
    return field


def _children(schema: dict, value: Any, path: str) -> Iterator[tuple[dict, Any, str]]:
    """The declared fields of an object, or the items of an array: (schema, value, path) each."""
    if isinstance(value, dict):
        for name, child in value.items():
            field = _field_schema(schema, name)
            if field is not None:
                yield field, child, _join(path, name)
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            yield schema["items"], item, f"{path}[{i}]"


def unknown_fields(schema: dict, value: Any, path: str = "") -> list[str]:
    """Paths of fields the schema does not declare, where it does not preserve unknown fields."""
    found: list[str] = []
    if isinstance(value, dict) and not schema.get("x-kubernetes-preserve-unknown-fields"):
        implicit = _IMPLICIT_ROOT_FIELDS if not path else frozenset()
        found += [_join(path, name) for name in value if name not in implicit and _field_schema(schema, name) is None]
    for field, child, child_path in _children(schema, value, path):
        found += unknown_fields(field, child, child_path)
    return found


def apply_defaults(schema: dict, value: Any) -> Any:
    """A copy of value with defaults filled in as apiextensions does: top-down into every object
    that exists (a defaulted `{}` then gets its own fields' defaults) and every array item. A null
    declared field is dropped first, so it takes its default if it has one (`nullable` is not
    implemented: none of our fields is)."""
    value = copy.deepcopy(value)
    _default_in_place(schema, value)
    return value


def _default_in_place(schema: dict, value: Any) -> None:
    if isinstance(value, dict):
        for name in [name for name, child in value.items() if child is None and _field_schema(schema, name) is not None]:
            del value[name]
        for name, field in schema.get("properties", {}).items():
            if name not in value and "default" in field:
                value[name] = copy.deepcopy(field["default"])
    for field, child, _ in _children(schema, value, ""):
        _default_in_place(field, child)


def field_errors(schema: dict, value: Any, path: str = "") -> list[FieldError]:
    """The schema's violations, then its CEL rules' unless a violation blocks them, as the API server orders them."""
    errors = _schema_errors(schema, value, path)
    if any(error.reason in _BLOCKING_REASONS for error in errors):
        return [*errors, RULES_NOT_CHECKED]
    return errors + _rule_errors(schema, value, path)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {dict: "object", list: "array", str: "string", int: "integer", float: "number"}[type(value)]


def _has_type(schema: dict, value: Any) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, (int, str)) and not isinstance(value, bool)
    expected = schema.get("type")
    if expected is None:
        return True
    if isinstance(value, bool):  # a bool is an int to Python, not to JSON
        return expected == "boolean"
    return isinstance(value, _JSON_TYPES[expected])


def _schema_errors(schema: dict, value: Any, path: str) -> list[FieldError]:
    if not _has_type(schema, value):
        expected = "integer,string" if schema.get("x-kubernetes-int-or-string") else schema["type"]
        actual = _type_name(value)
        return [_error(path, "FieldValueTypeInvalid", f'{path} in body must be of type {expected}: "{actual}"', actual)]
    errors: list[FieldError] = []
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(json.dumps(v) for v in schema["enum"])
        errors.append(_error(path, "FieldValueNotSupported", f"supported values: {supported}", value))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(_error(path, "FieldValueInvalid", f"{path} in body should be greater than or equal to {schema['minimum']}", value))
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(_error(path, "FieldValueInvalid", f"{path} in body should be less than or equal to {schema['maximum']}", value))
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(_error(path, "FieldValueInvalid", f"{path} in body should be at least {schema['minLength']} chars long", value))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(_error(path, "FieldValueTooLong", f"may not be more than {schema['maxLength']} bytes"))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(_error(path, "FieldValueInvalid", f"{path} in body should match '{schema['pattern']}'", value))
    if isinstance(value, list):
        errors += _list_errors(schema, value, path)
    if isinstance(value, dict):
        errors += [_error(_join(path, name), "FieldValueRequired") for name in schema.get("required", ()) if name not in value]
    for field, child, child_path in _children(schema, value, path):
        errors += _schema_errors(field, child, child_path)
    return errors


def _list_errors(schema: dict, value: list, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(_error(path, "FieldValueInvalid", f"{path} in body should have at least {schema['minItems']} items", len(value)))
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(_error(path, "FieldValueTooMany", f"must have at most {schema['maxItems']} items", len(value)))
    if schema.get("x-kubernetes-list-type") == "map":
        keys = schema["x-kubernetes-list-map-keys"]
        seen: set[tuple] = set()
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                continue  # already reported as of the wrong type
            key = tuple(item.get(k) for k in keys)
            if key in seen:
                errors.append(_error(f"{path}[{i}]", "FieldValueDuplicate", value=dict(zip(keys, key))))
            seen.add(key)
    return errors


# --- CEL. celpy stands in for the API server's CEL environment: it parses and evaluates the same
# language, but checks no types at compile time and lacks Kubernetes' extension libraries, of which
# only the functions our rules call are added here.


def _is_sorted(items: celtypes.ListType) -> celtypes.BoolType:
    """Kubernetes' list library `<list>.isSorted()`: elements in ascending order."""
    return celtypes.BoolType(all(a <= b for a, b in zip(items, items[1:])))


_CEL_FUNCTIONS = {"isSorted": _is_sorted}
_CEL = celpy.Environment()


@functools.cache
def compile_rule(rule: str) -> celpy.Runner:
    """The rule ready to run; raises celpy.CELParseError if it does not parse."""
    return _CEL.program(_CEL.compile(rule), functions=_CEL_FUNCTIONS)


def _to_cel(schema: dict, value: Any) -> celtypes.Value:
    """value as CEL sees it: typed by the schema (a `number` is a double even when written `1`)."""
    if schema.get("type") == "object" and isinstance(value, dict):
        return celtypes.MapType({
            celtypes.StringType(name): _to_cel(_field_schema(schema, name) or {}, child) for name, child in value.items()
        })
    if schema.get("type") == "array" and isinstance(value, list):
        return celtypes.ListType([_to_cel(schema["items"], item) for item in value])
    if schema.get("type") == "number" and isinstance(value, (int, float)):
        return celtypes.DoubleType(value)
    return celpy.json_to_cel(value)


def _rule_errors(schema: dict, value: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    rules = schema.get("x-kubernetes-validations", ())
    if rules:
        activation = {"self": _to_cel(schema, value)}
        for rule in rules:
            errors += _rule_error(rule, activation, schema.get("type", "object"), path)
    for field, child, child_path in _children(schema, value, path):
        errors += _rule_errors(field, child, child_path)
    return errors


def _rule_error(rule: dict, activation: dict, node_type: str, path: str) -> list[FieldError]:
    try:
        result = compile_rule(rule["rule"]).evaluate(activation)
    except celpy.CELEvalError as failure:
        result = failure
    if isinstance(result, celpy.CELEvalError):
        return [_error(path, "FieldValueInvalid", f"{result.args[0]} evaluating rule: {rule['rule']}", node_type)]
    if result:
        return []
    field = _join(path, rule["fieldPath"][1:]) if "fieldPath" in rule else path
    message = rule.get("message", f"failed rule: {rule['rule']}")
    reason = rule.get("reason", "FieldValueInvalid")
    # As the API server words them: Invalid shows the type of the node the rule sits on.
    return [_error(field, reason, message, node_type) if reason == "FieldValueInvalid" else _error(field, reason, message)]
