"""The rendered parts fit each other and the code they run: the router's config file is one the
router's own parser accepts, the operator's flags are ones `shoal operator` accepts and find the
router pods, Services and monitors select the pods they mean, every pod is locked down, and the
alerts and dashboards are the files that tests/monitoring/ checks."""

import argparse
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from shoal import constants
from shoal.operator.children import PoolRef, desired_deployment
from shoal.operator.cli import add_arguments, config_of
from shoal.operator.spec import parse_pool_spec
from shoal.router.config import hash_api_key, parse_config
from tests.chart.helm import CHART, RELEASE, VALUE_SETS, by_kind, one, render, value_sets
from tests.monitoring.prometheus_server import binary

IDS = [path.stem if path else "defaults" for path in value_sets()]
EVERYTHING = VALUE_SETS / "everything-on.yaml"
MOUNTS = "/etc/shoal/"


def mounted(docs: list[dict], tmp_path: Path) -> None:
    """Writes the router's Secrets where their mounts would put them (under tmp_path)."""
    for secret in by_kind(docs, "Secret"):
        name = secret["metadata"]["name"]
        directory = tmp_path / ("admin" if name.endswith("-router-admin") else "keys")
        directory.mkdir(exist_ok=True)
        for key, value in (secret.get("stringData") or {}).items():
            (directory / key).write_text(value)
        for key in secret.get("data") or {}:
            (directory / key).write_text("a-token-from-the-secret")


def router_config_text(docs: list[dict], tmp_path: Path) -> str:
    text = one(docs, "ConfigMap", f"shoal-{RELEASE}-router")["data"]["router.yaml"]
    return text.replace(MOUNTS, f"{tmp_path}/")


def test_the_router_parses_its_rendered_config(tmp_path):
    docs = render(EVERYTHING)
    mounted(docs, tmp_path)
    config = parse_config(yaml.safe_load(router_config_text(docs, tmp_path)), base_dir=tmp_path)
    assert config.pools == ()  # the operator puts the routes
    assert [t.name for t in config.tenants] == ["acme", "nightly"]
    assert config.api_keys == {
        hash_api_key("sk-acme-0123456789"): "acme",
        hash_api_key("sk-nightly-0123456789"): "nightly",
    }
    assert config.anonymous_tenant == "nightly" and config.admin_token == "a-token-from-the-secret"
    assert (config.listen.port, config.admin.port, config.grpc.port) == (
        constants.ROUTER_HTTP_PORT,
        constants.ROUTER_ADMIN_PORT,
        constants.ROUTER_GRPC_PORT,
    )


def test_the_routers_config_and_pod_agree_on_paths_and_ports():
    docs = render(EVERYTHING)
    deployment = one(docs, "Deployment", f"shoal-{RELEASE}-router")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    config_path = container["args"][container["args"].index("--config") + 1]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(Path(config_path).parent) in mounts
    text = one(docs, "ConfigMap", f"shoal-{RELEASE}-router")["data"]["router.yaml"]
    for path in re.findall(r"/etc/shoal/[\w/.-]+", text):
        assert str(Path(path).parent) in mounts, path
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {
        "http": constants.ROUTER_HTTP_PORT,
        "admin": constants.ROUTER_ADMIN_PORT,
        "grpc": constants.ROUTER_GRPC_PORT,
    }


def operator_args(docs: list[dict]) -> list[str]:
    deployment = one(docs, "Deployment", f"shoal-{RELEASE}-operator")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["shoal", "operator"]
    return container["args"]


def test_the_operators_pod_and_flags_use_the_default_ports():
    docs = render(EVERYTHING)
    (container,) = one(docs, "Deployment", f"shoal-{RELEASE}-operator")["spec"]["template"]["spec"]["containers"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "health": constants.OPERATOR_HEALTH_PORT,
        "metrics": constants.OPERATOR_METRICS_PORT,
    }
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(operator_args(docs))
    assert (
        args.liveness == f"http://0.0.0.0:{constants.OPERATOR_HEALTH_PORT}/healthz"
        and args.metrics_port == constants.OPERATOR_METRICS_PORT
    )
    assert parser.parse_args([]).liveness == args.liveness and parser.parse_args([]).metrics_port == args.metrics_port


def test_the_operator_accepts_its_flags_and_finds_this_releases_routers(tmp_path):
    docs = render(EVERYTHING)
    mounted(docs, tmp_path)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([arg.replace(MOUNTS, f"{tmp_path}/") for arg in operator_args(docs)])
    config = config_of(args)
    assert config.namespaces == ("team-a", "team-b") and config.router_admin_token == "a-token-from-the-secret"
    discovery = config.router_discovery
    assert (
        discovery is not None
        and discovery.namespace == "shoal-system"
        and discovery.admin_port == constants.ROUTER_ADMIN_PORT
    )
    router_pod_labels = one(docs, "Deployment", f"shoal-{RELEASE}-router")["spec"]["template"]["metadata"]["labels"]
    wanted = dict(term.split("=") for term in discovery.selector.split(","))
    assert wanted.items() <= router_pod_labels.items()
    operator_pod_labels = one(docs, "Deployment", f"shoal-{RELEASE}-operator")["spec"]["template"]["metadata"]["labels"]
    assert not wanted.items() <= operator_pod_labels.items()


@pytest.mark.parametrize("values", value_sets(), ids=IDS)
def test_operator_replicas_elect_a_leader_on_a_lease_they_may_write(values, monkeypatch):
    docs = render(values)
    deployment = one(docs, "Deployment", f"shoal-{RELEASE}-operator")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in container["env"]}
    assert env == {"POD_NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"}  # downward API
    monkeypatch.setenv("POD_NAMESPACE", deployment["metadata"]["namespace"])
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(container["args"])
    args.router_admin_token_file = None  # a mounted Secret; not the point here
    election = config_of(args).leader_election
    assert (
        election is not None and election.namespace == "shoal-system" and election.name == f"shoal-{RELEASE}-operator"
    )
    # Several replicas roll (a new one waits as a candidate); one alone is replaced.
    replicas = deployment["spec"]["replicas"]
    assert deployment["spec"]["strategy"]["type"] == ("RollingUpdate" if replicas > 1 else "Recreate")
    # The operator's account may read, create and update leases there, and only there.
    (role,) = by_kind(docs, "Role")
    (binding,) = by_kind(docs, "RoleBinding")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == election.namespace
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": deployment["spec"]["template"]["spec"]["serviceAccountName"],
            "namespace": election.namespace,
        }
    ]


def test_the_operators_replicas_follow_the_values():
    assert one(render(), "Deployment", f"shoal-{RELEASE}-operator")["spec"]["replicas"] == 2
    assert one(render(VALUE_SETS / "minimal.yaml"), "Deployment", f"shoal-{RELEASE}-operator")["spec"]["replicas"] == 1


@pytest.mark.parametrize("values", value_sets(), ids=IDS)
def test_services_and_budgets_select_their_own_pods(values):
    docs = render(values)
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in by_kind(docs, "Deployment")}
    for selecting in by_kind(docs, "Service") + by_kind(docs, "PodDisruptionBudget"):
        selector = selecting["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        matched = [name for name, labels in pods.items() if selector.items() <= labels.items()]
        component = selecting["metadata"]["labels"]["app.kubernetes.io/component"]  # router-metrics: component router
        assert matched == [f"shoal-{RELEASE}-{component}"], (selecting["kind"], selecting["metadata"]["name"], matched)


@pytest.mark.parametrize("values", value_sets(), ids=IDS)
def test_every_pod_is_locked_down_and_sized(values):
    for deployment in by_kind(render(values), "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
            assert container["livenessProbe"] and container["readinessProbe"]
            assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}  # a writable scratch dir


def test_monitors_select_what_they_scrape():
    docs = render(EVERYTHING)
    (service_monitor,) = by_kind(docs, "ServiceMonitor")
    services = [
        s
        for s in by_kind(docs, "Service")
        if service_monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    endpoints = {endpoint["port"] for endpoint in service_monitor["spec"]["endpoints"]}
    scraped = {
        (s["metadata"]["labels"]["app.kubernetes.io/component"], port["targetPort"])
        for s in services
        for port in s["spec"]["ports"]
        if port["name"] in endpoints
    }
    # The router's /metrics is on its admin port (not the public http one); the operator's on its own.
    assert scraped == {("router", "admin"), ("operator", "metrics")}
    assert service_monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    annotations = one(docs, "Deployment", f"shoal-{RELEASE}-router")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(constants.ROUTER_ADMIN_PORT)

    (pod_monitor,) = by_kind(docs, "PodMonitor")
    spec = parse_pool_spec({"model": {"revision": "v1"}, "resources": {"gpus": 1}})
    runtime = desired_deployment(PoolRef("chat", "team-a", "uid"), "v1-abc123", spec, 1)["spec"]["template"]
    assert pod_monitor["spec"]["selector"]["matchLabels"].items() <= runtime["metadata"]["labels"].items()
    assert pod_monitor["spec"]["namespaceSelector"] == {"any": True}
    ports = {p["name"] for p in runtime["spec"]["containers"][0]["ports"]}
    assert {endpoint["port"] for endpoint in pod_monitor["spec"]["podMetricsEndpoints"]} <= ports


@pytest.mark.parametrize("service_type", ["ClusterIP", "LoadBalancer"])
def test_the_admin_port_stays_inside_the_cluster(service_type):
    """Only the router's metrics Service carries the admin port, and it is ClusterIP whatever the public
    router Service is; the public one has no admin port."""
    docs = render(EVERYTHING, sets=(f"router.service.type={service_type}",))
    public = one(docs, "Service", f"shoal-{RELEASE}-router")
    assert public["spec"]["type"] == service_type and "admin" not in {p["targetPort"] for p in public["spec"]["ports"]}
    carrying = [s for s in by_kind(docs, "Service") if "admin" in {p["targetPort"] for p in s["spec"]["ports"]}]
    assert [(s["metadata"]["name"], s["spec"]["type"]) for s in carrying] == [
        (f"shoal-{RELEASE}-router-metrics", "ClusterIP")
    ]


def test_ingress_and_gateway_route_to_the_routers_http_port():
    docs = render(EVERYTHING)
    (ingress,) = by_kind(docs, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": f"shoal-{RELEASE}-router", "port": {"name": "http"}}
    assert ingress["spec"]["tls"] == [{"secretName": "llm-example-tls", "hosts": ["llm.example.com"]}]
    (route,) = by_kind(docs, "HTTPRoute")
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateways"}]
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": f"shoal-{RELEASE}-router", "port": 8000}]


def test_without_keys_of_its_own_the_chart_makes_no_key_secret():
    docs = render(VALUE_SETS / "minimal.yaml")
    assert [s["metadata"]["name"] for s in by_kind(docs, "Secret")] == [f"shoal-{RELEASE}-router-admin"]
    volumes = one(docs, "Deployment", f"shoal-{RELEASE}-router")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "keys", "secret": {"secretName": "my-shoal-keys"}} in volumes


def test_the_prometheus_rule_carries_the_alert_file_and_promtool_accepts_it(tmp_path):
    (rule,) = by_kind(render(EVERYTHING), "PrometheusRule")
    alerts = yaml.safe_load((CHART / "rules" / "shoal-alerts.yaml").read_text())
    assert rule["spec"]["groups"] == alerts["groups"]  # the file as it is, templates like {{ $labels.pool }} untouched
    rendered = tmp_path / "rendered-rules.yaml"
    rendered.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    check = subprocess.run([binary("promtool"), "check", "rules", str(rendered)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_each_dashboard_is_a_configmap_for_the_grafana_sidecar():
    dashboards = sorted((CHART / "dashboards").glob("*.json"))
    assert len(dashboards) == 4
    maps = [
        m for m in by_kind(render(EVERYTHING), "ConfigMap") if m["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    assert sorted(name for m in maps for name in m["data"]) == [path.name for path in dashboards]
    for config_map in maps:
        assert config_map["metadata"]["namespace"] == "monitoring"
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "LLM serving"}
        ((name, text),) = config_map["data"].items()
        assert json.loads(text) == json.loads((CHART / "dashboards" / name).read_text())
    assert not [
        m
        for m in by_kind(render(VALUE_SETS / "minimal.yaml"), "ConfigMap")
        if "grafana_dashboard" in m["metadata"]["labels"]
    ]
