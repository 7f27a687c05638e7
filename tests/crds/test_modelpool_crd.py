"""The ModelPool CRD itself, checked for what the API server would refuse it for (or quietly serve
wrong): a structural schema, defaults its own schema accepts, CEL rules that parse and point at real
fields, printer columns and scale paths that read declared fields of the right type."""

import pytest

from tests.crds.files import MODELPOOL_CRD
from tests.support.crd_schema import apply_defaults, compile_rule, field_errors, unknown_fields, walk_schema

SCALARS = {"string", "integer", "number", "boolean"}
# ObjectMeta fields every object has, whatever its schema says, as printer column types.
OBJECT_META = {".metadata.name": "string", ".metadata.namespace": "string", ".metadata.creationTimestamp": "date"}

(VERSION,) = MODELPOOL_CRD["spec"]["versions"]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]
NODES = list(walk_schema(SCHEMA))
DEFAULTED = [(path, node) for path, node in NODES if "default" in node]
RULES = [(path, node, rule) for path, node in NODES for rule in node.get("x-kubernetes-validations", ())]


def schema_at(schema: dict, json_path: str) -> dict | None:
    """The node a simple JSONPath (`.status.replicas`) names, following declared properties only."""
    node: dict | None = schema
    for name in json_path.removeprefix(".").split("."):
        node = node.get("properties", {}).get(name)
        if node is None:
            return None
    return node


def test_every_node_has_a_type():
    untyped = [
        path or "." for path, node in NODES
        if "type" not in node and not node.get("x-kubernetes-int-or-string") and not node.get("x-kubernetes-preserve-unknown-fields")
    ]
    assert untyped == []


def test_int_or_string_nodes_have_no_type():
    assert [path for path, node in NODES if node.get("x-kubernetes-int-or-string") and "type" in node] == []


def test_children_match_their_nodes_type():
    misplaced = [
        path for path, node in NODES
        if ("items" in node) != (node.get("type") == "array")
        or (("properties" in node or "additionalProperties" in node) and node.get("type") != "object")
        or ("properties" in node and "additionalProperties" in node)
    ]
    assert misplaced == []


def test_list_map_keys_are_required_scalars_of_object_items():
    for path, node in NODES:
        if node.get("x-kubernetes-list-type") == "map":
            items = node["items"]
            assert items["type"] == "object", path
            for key in node["x-kubernetes-list-map-keys"]:
                assert items["properties"][key]["type"] in SCALARS, f"{path}: {key}"
                assert key in items.get("required", ()) or "default" in items["properties"][key], f"{path}: {key}"


@pytest.mark.parametrize("path, node", DEFAULTED, ids=[path for path, _ in DEFAULTED])
def test_default_is_valid_against_its_own_schema(path, node):
    assert unknown_fields(node, node["default"], path) == []
    assert field_errors(node, apply_defaults(node, node["default"]), path) == []


@pytest.mark.parametrize("path, node, rule", RULES, ids=[f"{path}: {rule['rule']}" for path, _, rule in RULES])
def test_rule_parses_and_its_field_path_is_declared(path, node, rule):
    compile_rule(rule["rule"])
    if "fieldPath" in rule:
        assert schema_at(node, rule["fieldPath"]) is not None


COLUMNS = VERSION["additionalPrinterColumns"]


@pytest.mark.parametrize("column", COLUMNS, ids=[column["name"] for column in COLUMNS])
def test_printer_column_reads_a_declared_field_of_its_type(column):
    path = column["jsonPath"]
    declared = OBJECT_META.get(path) or (schema_at(SCHEMA, path) or {}).get("type")
    assert declared == column["type"]


def test_scale_subresource_reads_declared_fields():
    scale = VERSION["subresources"]["scale"]
    assert scale["specReplicasPath"].startswith(".spec.")
    assert scale["statusReplicasPath"].startswith(".status.")
    assert (schema_at(SCHEMA, scale["specReplicasPath"]) or {}).get("type") == "integer"
    assert (schema_at(SCHEMA, scale["statusReplicasPath"]) or {}).get("type") == "integer"
    assert (schema_at(SCHEMA, scale["labelSelectorPath"]) or {}).get("type") == "string"
