"""Label and field selectors as the emulated API server reads them from list and watch queries."""

import pytest

from tests.support.object_selectors import SelectorError, field_matcher, label_matcher, selector_query


def pod(labels: dict, phase: str = "Running") -> dict:
    return {"metadata": {"name": "p", "namespace": "ns", "labels": labels}, "status": {"phase": phase}, "spec": {"hostNetwork": False}}


@pytest.mark.parametrize(
    ("selector", "matching"),
    [
        ("app=web", True),
        ("app==web,tier=front", True),
        ("app!=web", False),
        ("tier in (front, back)", True),
        ("tier notin (front,back),app=web", False),
        ("app", True),
        ("!app", False),
        ("!missing", True),
        ("", True),
    ],
)
def test_emulated_label_selectors(selector, matching):
    assert label_matcher(selector)(pod({"app": "web", "tier": "front"})) is matching


def test_emulated_field_selectors_read_dotted_paths_and_absent_fields_as_empty():
    assert field_matcher("metadata.name=p,metadata.namespace=ns")(pod({}))
    assert field_matcher("status.phase!=Pending")(pod({}))
    assert not field_matcher("status.phase=Pending")(pod({}))
    assert field_matcher("spec.nodeName=")(pod({}))
    assert field_matcher("spec.hostNetwork=false")(pod({}))


def test_emulated_selectors_reject_what_does_not_parse():
    with pytest.raises(SelectorError):
        label_matcher("app in web")
    with pytest.raises(SelectorError):
        field_matcher("metadata.name")


def test_emulated_label_selector_object_becomes_a_query():
    query = selector_query({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}, {"key": "x", "operator": "DoesNotExist"}]})
    assert query == "app=web,tier in (a,b),!x"
    assert label_matcher(query)(pod({"app": "web", "tier": "b"}))
