"""The stand-in for the API server's custom resource validation (tests/support/crd_schema.py): the
order it checks in and the way it words a rejection, where the ModelPool table does not show them."""

import copy

import pytest

from tests.support.crd_schema import RULES_NOT_CHECKED, Crd, InvalidObject, validate, write_validator


def manifest(spec: dict) -> dict:
    return {"apiVersion": "shoal.dev/v1alpha1", "kind": "ModelPool", "metadata": {"name": "chat"}, "spec": spec}


def test_a_rejection_reads_like_the_api_servers(modelpool_crd):
    with pytest.raises(InvalidObject) as rejected:
        validate(modelpool_crd, manifest({"model": {"revision": "v1", "source": "path"}}))
    assert str(rejected.value) == (
        'ModelPool.shoal.dev "chat" is invalid: '
        "spec.model.path: Required value: model.path is required when model.source is 'path'"
    )
    assert [c.reason for c in rejected.value.causes] == ["FieldValueRequired"]


def test_a_blocking_schema_error_keeps_the_cel_rules_from_running(modelpool_crd):
    # revision missing (Required blocks) and source path without a path (a CEL rule): only the first is reported.
    with pytest.raises(InvalidObject) as rejected:
        validate(modelpool_crd, manifest({"model": {"source": "path"}}))
    assert rejected.value.fields == ("spec.model.revision", RULES_NOT_CHECKED.field)
    assert "some validation rules were not checked" in str(rejected.value)


def test_a_non_blocking_schema_error_is_reported_with_the_cel_rules(modelpool_crd):
    spec = {"model": {"revision": "v1"}, "replicas": -1, "runtime": {"device": "cpu"}}
    with pytest.raises(InvalidObject) as rejected:
        validate(modelpool_crd, manifest(spec))
    assert rejected.value.fields == ("spec.replicas", "spec.resources.gpus")
    assert str(rejected.value).startswith('ModelPool.shoal.dev "chat" is invalid: [spec.replicas: Invalid value: -1: ')


def test_the_manifest_given_is_left_as_it_was(modelpool_crd):
    given = manifest({"model": {"revision": "v1"}, "runtime": None})
    before = copy.deepcopy(given)
    validate(modelpool_crd, given)
    assert given == before


def test_as_a_write_hook_it_reports_errors_and_lets_unknown_fields_be_pruned(modelpool_crd):
    errors = write_validator(modelpool_crd)
    assert errors(manifest({"model": {"revision": "v1"}, "resources": {"gpus": 0}, "runtime": {"device": "cpu"}})) == []
    assert [e.field for e in errors(manifest({"model": {"revision": "v1"}, "replicas": -1}))] == ["spec.replicas"]  # fmt: skip
    # kubectl --validate=false asks for no strict decoding: the API server drops unknown fields.
    assert errors(manifest({"model": {"revision": "v1"}, "replicaz": 3})) == []


def test_another_kind_or_version_is_not_this_crds_to_judge(modelpool_crd):
    with pytest.raises(ValueError, match="not a served ModelPool"):
        validate(modelpool_crd, {**manifest({}), "apiVersion": "shoal.dev/v1"})


def widget_crd(schema: dict) -> Crd:
    return Crd.from_manifest({"spec": {
        "group": "example.com", "names": {"kind": "Widget"},
        "versions": [{"name": "v1", "served": True, "schema": {"openAPIV3Schema": schema}}],
    }})


def test_a_schema_keyword_it_does_not_implement_is_refused_not_ignored():
    with pytest.raises(NotImplementedError, match="'format'"):
        widget_crd({"type": "object", "properties": {"at": {"type": "string", "format": "date-time"}}})


def test_a_rule_that_fails_to_evaluate_is_reported_with_the_rule():
    crd = widget_crd({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}},
                                "x-kubernetes-validations": [{"rule": "self.size > 0"}]}},
    })
    with pytest.raises(InvalidObject, match=r'spec: Invalid value: "object": .* evaluating rule: self.size > 0'):
        validate(crd, {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {}})
