"""The alert rules pass `promtool check rules`, and promtool's unit tests (shoal-alerts.test.yaml) see
every alert fire on unhealthy synthetic series and stay quiet on the healthy ones beside them."""

import subprocess
from pathlib import Path

import yaml

from tests.monitoring.prometheus_server import binary
from tests.monitoring.queries import RULES_FILE, rule_queries

UNIT_TESTS = Path(__file__).with_name("shoal-alerts.test.yaml")
SEVERITIES = {"critical", "warning", "info"}


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [binary("promtool"), *args], cwd=UNIT_TESTS.parent, capture_output=True, text=True, timeout=120
    )


def test_promtool_checks_the_rule_file():
    result = promtool("check", "rules", str(RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rule_queries())} rules found" in result.stdout


def test_promtool_unit_tests_pass():
    result = promtool("test", "rules", UNIT_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_in_a_unit_test():
    cases = [case for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    firing = {case["alertname"] for case in cases if case["exp_alerts"]}
    assert firing == {query.name for query in rule_queries()}


def test_the_rule_file_is_plain_and_every_alert_says_how_bad_and_what_to_do():
    """Helm embeds the file as it is (.Files.Get): a rule file with groups, nothing else."""
    document = yaml.safe_load(RULES_FILE.read_text())
    assert list(document) == ["groups"]
    for group in document["groups"]:
        for rule in group["rules"]:
            assert "for" in rule, rule["alert"]
            assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
            assert rule["annotations"]["summary"] and len(rule["annotations"]["description"]) > 80, rule["alert"]
