"""Every PromQL expression Shoal ships: dashboard panels, dashboard annotations, alert rules, and the
dashboards' template variable queries, with Grafana's variables filled in the way Grafana would."""

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = REPO / "charts" / "shoal" / "dashboards"
RULES_FILE = REPO / "charts" / "shoal" / "rules" / "shoal-alerts.yaml"

# Grafana's interval variables, as it could fill them; a rate interval that holds all of the live
# test's load even on a slow machine.
GRAFANA_INTERVALS = {"__rate_interval": "5m", "__interval": "15s", "__range": "1h"}
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


@dataclass(frozen=True)
class Query:
    source: str  # a dashboard's uid, or "rules"
    name: str  # the panel's title, the annotation's, alert's or variable's name
    expr: str  # Grafana's variables filled in

    def __str__(self) -> str:
        return f"{self.source}: {self.name!r}: {self.expr}"


def dashboards() -> dict[str, dict]:
    """uid -> dashboard, for every JSON file under charts/shoal/dashboards/."""
    loaded = [json.loads(path.read_text()) for path in sorted(DASHBOARDS_DIR.glob("*.json"))]
    return {d["uid"]: d for d in loaded}


def panels(dashboard: dict) -> list[dict]:
    """Every panel, those inside collapsed rows too."""
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def template_variables(dashboard: dict) -> list[dict]:
    return dashboard["templating"]["list"]


def fill(expr: str, dashboard: dict) -> str:
    """The expression as sent to Prometheus with every value of every variable selected (All: `.*`);
    variables the dashboard does not define stay as they are, for the tests to catch."""
    values = {**GRAFANA_INTERVALS, **{v["name"]: ".*" for v in template_variables(dashboard) if v["type"] == "query"}}
    return _VARIABLE.sub(lambda m: values.get(m.group(1) or m.group(2), m.group(0)), expr)


def panel_queries() -> list[Query]:
    out = []
    for uid, dashboard in dashboards().items():
        for panel in panels(dashboard):
            out.extend(
                Query(uid, panel["title"], fill(target["expr"], dashboard)) for target in panel.get("targets", [])
            )
        for annotation in dashboard["annotations"]["list"]:
            out.append(Query(uid, annotation["name"], fill(annotation["expr"], dashboard)))
    return out


def rule_queries() -> list[Query]:
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return [Query("rules", rule["alert"], rule["expr"]) for group in groups for rule in group["rules"]]


def variable_queries() -> list[tuple[Query, str]]:
    """(the series a `label_values(selector, label)` variable reads, as a query; the label)."""
    out = []
    for uid, dashboard in dashboards().items():
        for variable in template_variables(dashboard):
            if variable["type"] != "query":
                continue
            match = _LABEL_VALUES.match(variable["query"])
            assert match, (
                f"{uid}: variable {variable['name']} is not label_values(selector, label): {variable['query']!r}"
            )
            out.append((Query(uid, variable["name"], fill(match["selector"], dashboard)), match["label"]))
    return out
