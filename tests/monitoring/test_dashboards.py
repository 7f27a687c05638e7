"""The Grafana dashboards, checked as files: the four of them, the current schema, one datasource
variable that every panel, query and annotation uses (no datasource uid of some Grafana baked in),
pool and revision variables, unique panel ids on a grid without overlaps, `$__rate_interval` in every
range, and no variable a dashboard does not define."""

import json
import re

import pytest

from tests.monitoring.queries import DASHBOARDS_DIR, dashboards, panel_queries, panels, template_variables

UIDS = {"shoal-fleet-overview", "shoal-pool-detail", "shoal-runtime-internals", "shoal-qos-tenants"}
SCHEMA_VERSION = 41  # Grafana 12
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def test_the_four_dashboards_are_json_named_by_their_uid():
    files = sorted(DASHBOARDS_DIR.glob("*.json"))
    for path in files:
        assert json.loads(path.read_text())["uid"] == path.stem
    assert {path.stem for path in files} == UIDS


@pytest.fixture(params=sorted(UIDS))
def dashboard(request) -> dict:
    return dashboards()[request.param]


def test_schema_version_and_title(dashboard):
    assert dashboard["schemaVersion"] == SCHEMA_VERSION
    assert dashboard["title"].startswith("Shoal / ") and "shoal" in dashboard["tags"]
    assert dashboard["id"] is None  # Grafana assigns it on import


def test_variables_datasource_pool_and_revision(dashboard):
    variables = {v["name"]: v for v in template_variables(dashboard)}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("pool", "revision"):
        assert variables[name]["type"] == "query"
        assert variables[name]["query"].startswith("label_values(") and variables[name]["query"].endswith(f", {name})")
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]
            if variable["includeAll"]:
                assert variable["allValue"] == ".*", variable["name"]  # All also matches revision=""


def test_every_panel_query_and_annotation_uses_the_datasource_variable(dashboard):
    for panel in panels(dashboard):
        if panel["type"] == "row":
            assert "targets" not in panel, panel["title"]  # rows group panels, they query nothing
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE and target["expr"].strip(), panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), panel["title"]
    for annotation in dashboard["annotations"]["list"]:
        assert annotation["datasource"] == DATASOURCE and annotation["expr"].strip(), annotation["name"]


def test_no_datasource_is_hard_coded_anywhere(dashboard):
    """Every `datasource` in the document, wherever it sits, is the variable."""

    def datasources(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "datasource":
                    yield value
                yield from datasources(value)
        elif isinstance(node, list):
            for item in node:
                yield from datasources(item)

    found = list(datasources(dashboard))
    assert found and all(d == DATASOURCE for d in found)


def test_panel_ids_are_unique_and_panels_do_not_overlap(dashboard):
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))
    taken = {}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{panel['title']!r} overlaps {taken[x, y]!r}"
                taken[x, y] = panel["title"]


def test_every_range_is_the_rate_interval(dashboard):
    """Grafana sizes $__rate_interval to the scrape interval and the step; a fixed range is too short
    on a slow scrape or too smooth on a short time range."""
    exprs = [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"]]
    ranges = {r for expr in exprs for r in re.findall(r"\[([^\]]*)\]", expr)}
    assert ranges == {"$__rate_interval"}


def test_queries_use_only_variables_their_dashboard_defines():
    undefined = [str(query) for query in panel_queries() if "$" in query.expr]
    assert not undefined, "\n".join(undefined)
