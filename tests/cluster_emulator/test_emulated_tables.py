"""The emulated API server's Tables for `kubectl get` (tests/support/tables.py): columns from the
CRD, cells from the object, ages as Kubernetes writes them."""

import datetime

import pytest
import yaml

from tests.support.crd_resources import printer_columns
from tests.support.emulated_api import crd_files
from tests.support.tables import human_age, table_of, wants_table

NOW = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC)
KUBECTL_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"


def modelpool_columns():
    (crd,) = [yaml.safe_load(path.read_text()) for path in crd_files() if path.name == "modelpool.yaml"]
    return printer_columns(crd["spec"]["versions"][0])


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(-5, "<invalid>"), (-1, "0s"), (0, "0s"), (119, "119s"), (120, "2m"), (303, "5m3s"), (600, "10m"), (3 * 3600 - 1, "179m"),
     (3 * 3600 + 600, "3h10m"), (8 * 3600, "8h"), (47 * 3600, "47h"), (48 * 3600, "2d"), (76 * 3600, "3d4h"), (30 * 86400, "30d")],
)  # fmt: skip
def test_emulated_tables_write_ages_as_kubernetes_does(seconds, shown):
    assert human_age(NOW - datetime.timedelta(seconds=seconds), NOW) == shown


def test_emulated_tables_answer_only_requests_for_meta_v1_tables():
    assert wants_table(KUBECTL_ACCEPT)
    assert not wants_table("application/json")
    assert not wants_table("application/json;as=Table;v=v1beta1;g=meta.k8s.io")


def test_emulated_tables_fill_modelpool_columns_from_status():
    pool = {
        "metadata": {"name": "chat", "namespace": "default", "creationTimestamp": "2026-11-23T11:55:00Z"},
        "status": {"readyReplicas": 2, "stableRevision": "v1-abc123", "canaryRevision": "v2-def456", "canaryWeight": 25, "phase": "Progressing"},
    }  # fmt: skip
    table = table_of([pool], modelpool_columns(), "7", NOW)
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Ready", "Stable", "Canary", "Weight", "Phase", "Age"]
    assert table["rows"][0]["cells"] == ["chat", 2, "v1-abc123", "v2-def456", 25, "Progressing", "5m"]
    assert table["rows"][0]["object"]["metadata"]["name"] == "chat"
    bare = table_of([{"metadata": {"name": "new", "creationTimestamp": "2026-11-23T11:59:58Z"}}], modelpool_columns(), "8", NOW)
    assert bare["rows"][0]["cells"] == ["new", None, None, None, None, None, "2s"]


def test_emulated_tables_default_to_age_and_refuse_paths_they_cannot_follow():
    assert [c.name for c in printer_columns({"name": "v1"})] == ["Age"]
    with pytest.raises(ValueError, match="dotted paths"):
        printer_columns({"additionalPrinterColumns": [{"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'}]})  # fmt: skip
