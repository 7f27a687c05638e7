"""What the local node runs for a pod, worked out as the kubelet would (pure)."""

import copy

import pytest

from tests.support.pod_launch import Probe, UnsupportedPod, expand, launch_of

RUNTIME_POD = {
    "metadata": {"name": "chat-r1-abc", "namespace": "team", "uid": "u-1"},
    "spec": {
        "containers": [{
            "name": "runtime",
            "image": "ghcr.io/shoal-dev/shoal-runtime:0.1.0",
            "command": ["shoal", "runtime"],
            "args": ["--model", "default", "--host", "$(POD_IP)", "--port", "50051", "--metrics-port", "8001", "--pool", "$(POOL)", "--revision", "r1"],
            "env": [
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "POOL", "value": "chat"},
                {"name": "WHERE", "value": "$(POOL)@$(POD_NAME)"},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            ],
            "ports": [{"name": "grpc", "containerPort": 50051}, {"name": "metrics", "containerPort": 8001}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "metrics"}, "periodSeconds": 2},
            "livenessProbe": {"httpGet": {"path": "/health", "port": 8001}},
            "resources": {"limits": {"nvidia.com/gpu": 1}},
        }],
        "terminationGracePeriodSeconds": 45,
    },
}  # fmt: skip


def launch(pod: dict = RUNTIME_POD):
    return launch_of(pod, pod_ip="127.0.0.7", host_ip="127.0.0.1", node_name="n", shoal_executable="/venv/bin/shoal")


def test_emulated_runtime_pod_runs_this_venvs_shoal_with_its_variables_expanded():
    plan = launch()
    assert plan.argv == ["/venv/bin/shoal", "runtime", "--model", "default", "--host", "127.0.0.7", "--port", "50051", "--metrics-port", "8001", "--pool", "chat", "--revision", "r1"]
    # Like the kubelet: a value sees the variables defined above it only.
    assert plan.env == {"POD_IP": "127.0.0.7", "POOL": "chat", "WHERE": "chat@$(POD_NAME)", "POD_NAME": "chat-r1-abc"}
    assert plan.restart_policy == "Always" and plan.grace_s == 45


def test_emulated_probes_resolve_named_ports_and_take_the_kubelets_defaults():
    plan = launch()
    assert plan.readiness == Probe(port=8001, path="/ready", period_s=2)
    assert plan.liveness == Probe(port=8001, path="/health", initial_delay_s=0, period_s=10, timeout_s=1, success_threshold=1, failure_threshold=3)
    assert plan.startup is None


def test_emulated_expansion_follows_the_kubelets_rules():
    env = {"A": "1"}
    assert expand("$(A)-$(B)", env) == "1-$(B)"
    assert expand("$$(A) costs $5", env) == "$(A) costs $5"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda spec: spec.update(volumes=[{"name": "models"}]), "volumes"),
        (lambda spec: spec["containers"].append(copy.deepcopy(spec["containers"][0])), "exactly one container"),
        (lambda spec: spec["containers"][0].pop("command"), "image entrypoint"),
        (lambda spec: spec["containers"][0].update(command=["python", "-m", "x"]), "only `shoal ...` commands"),
        (lambda spec: spec["containers"][0]["env"].append({"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}), "valueFrom.fieldRef"),
        (lambda spec: spec["containers"][0].update(readinessProbe={"exec": {"command": ["true"]}}), "httpGet and tcpSocket"),
        (lambda spec: spec["containers"][0].update(livenessProbe={"tcpSocket": {"port": "admin"}}), "names no container port"),
    ],
)
def test_emulated_node_refuses_what_it_cannot_run_locally(change, reason):
    pod = copy.deepcopy(RUNTIME_POD)
    change(pod["spec"])
    with pytest.raises(UnsupportedPod, match=reason):
        launch(pod)
