"""What the local node runs for a pod, worked out as the kubelet would (pure): argv, env, mounts,
probes, and what it refuses."""

import copy
import re

import pytest

from tests.support.pod_env import Placement, expand, quantity
from tests.support.pod_launch import Mount, Probe, UnsupportedPod, check_supported, launch_of
from tests.support.pod_references import MissingReference, PodObjects, TokenSpec, references

EXECUTABLES = {"shoal": "/venv/bin/shoal", "python": "/venv/bin/python", "python3": "/venv/bin/python"}
PLACEMENT = Placement(
    node_name="n",
    host_ip="10.9.0.1",
    pod_ip="10.9.0.7",
    api_host="10.9.0.1",
    api_port=443,
    allocatable={"cpu": "64", "memory": "256Gi"},
)
OBJECTS = PodObjects(
    config_maps={"settings": {"mode": b"fast", "size": b"3"}},
    secrets={"creds": {"password": b"hunter2", "user": b"admin"}},
    tokens={TokenSpec((), 3607): "token-1"},
)
# As the API server returns it: defaulted, with the kube-api-access volume that admission adds.
RUNTIME_POD = {
    "metadata": {"name": "chat-r1-abc", "namespace": "team", "uid": "u-1", "labels": {"pool": "chat"}},
    "spec": {
        "containers": [
            {
                "name": "runtime",
                "image": "ghcr.io/shoal-dev/shoal-runtime:0.1.0",
                "imagePullPolicy": "IfNotPresent",
                "command": ["shoal", "runtime"],
                "args": [
                    "--model",
                    "default",
                    "--host",
                    "$(POD_IP)",
                    "--port",
                    "50051",
                    "--pool",
                    "$(POOL)",
                    "--keep",
                    "$$(POOL)",
                ],
                "env": [
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}},
                    {"name": "POOL", "value": "chat"},
                    {"name": "WHERE", "value": "$(POOL)@$(POD_NAME)"},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "LABEL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['pool']"}}},
                    {"name": "ACCOUNT", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                    {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                    {"name": "ABSENT", "valueFrom": {"secretKeyRef": {"name": "other", "key": "k", "optional": True}}},
                    {
                        "name": "MEMORY_MI",
                        "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
                    },
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                    {
                        "name": "CPU_REQUEST_M",
                        "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}},
                    },
                ],
                "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}, {"secretRef": {"name": "creds"}}],
                "ports": [{"name": "grpc", "containerPort": 50051}, {"name": "metrics", "containerPort": 8001}],
                "readinessProbe": {
                    "httpGet": {
                        "path": "/ready",
                        "port": "metrics",
                        "httpHeaders": [{"name": "X-Probe", "value": "1"}],
                    },
                    "periodSeconds": 2,
                },
                "livenessProbe": {"httpGet": {"path": "/health", "port": 8001}},
                "startupProbe": {"tcpSocket": {"port": "grpc"}, "failureThreshold": 30},
                "resources": {"limits": {"memory": "1Gi", "nvidia.com/gpu": 1}, "requests": {"cpu": "250m"}},
                "securityContext": {"readOnlyRootFilesystem": True, "runAsUser": 1000},
                "volumeMounts": [
                    {
                        "name": "kube-api-access-x1",
                        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                        "readOnly": True,
                    },
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "settings", "mountPath": "/etc/app/mode", "subPath": "mode"},
                    {"name": "tmp", "mountPath": "/scratch", "subPathExpr": "$(POD_NAME)", "readOnly": True},
                ],
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
            }
        ],
        "volumes": [
            {"name": "tmp", "emptyDir": {}},
            {"name": "settings", "configMap": {"name": "settings", "defaultMode": 420}},
            {
                "name": "kube-api-access-x1",
                "projected": {
                    "defaultMode": 420,
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {
                            "downwardAPI": {
                                "items": [
                                    {
                                        "path": "namespace",
                                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                    }
                                ]
                            }
                        },
                    ],
                },
            },
        ],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 45,
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "pools",
        "serviceAccount": "pools",
        "securityContext": {"runAsNonRoot": True, "fsGroup": 1000},
        "schedulerName": "default-scheduler",
        "tolerations": [
            {
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            }
        ],
        "priority": 0,
        "enableServiceLinks": True,
        "preemptionPolicy": "PreemptLowerPriority",
        "nodeName": "n",
        "hostNetwork": False,
        "initContainers": [],
    },
}


def launch(pod: dict = RUNTIME_POD, objects: PodObjects = OBJECTS):
    return launch_of(pod, PLACEMENT, objects, EXECUTABLES)


def test_a_shoal_command_runs_this_venvs_shoal_with_its_variables_expanded():
    plan = launch()
    assert plan.argv == [
        "/venv/bin/shoal",
        "runtime",
        "--model",
        "default",
        "--host",
        "10.9.0.7",
        "--port",
        "50051",
        "--pool",
        "chat",
        "--keep",
        "$(POOL)",
    ]
    assert plan.restart_policy == "Always" and plan.grace_s == 45 and plan.working_dir == "/"


def test_env_is_built_as_the_kubelet_builds_it():
    env = launch().env
    # The `kubernetes` Service first, then envFrom, then env; a value sees only what is above it.
    assert env["KUBERNETES_SERVICE_HOST"] == "10.9.0.1" and env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["KUBERNETES_PORT_443_TCP"] == "tcp://10.9.0.1:443"
    assert {key: env[key] for key in ("CFG_mode", "CFG_size", "user", "password")} == {
        "CFG_mode": "fast",
        "CFG_size": "3",
        "user": "admin",
        "password": "hunter2",
    }
    assert env["WHERE"] == "chat@$(POD_NAME)" and env["POD_NAME"] == "chat-r1-abc"
    assert (env["POD_IP"], env["LABEL"], env["ACCOUNT"]) == ("10.9.0.7", "chat", "pools")
    assert (env["MODE"], env["PASSWORD"]) == ("fast", "hunter2")
    assert "ABSENT" not in env  # optional, and its Secret is missing
    # 1Gi in Mi; no cpu limit: the node's allocatable; the request in millicores
    assert (env["MEMORY_MI"], env["CPU"], env["CPU_REQUEST_M"]) == ("1024", "64", "250")


def test_probes_resolve_named_ports_and_take_the_kubelets_defaults():
    plan = launch()
    assert plan.readiness == Probe(port=8001, path="/ready", period_s=2, headers=(("X-Probe", "1"),))
    assert plan.liveness == Probe(
        port=8001, path="/health", initial_delay_s=0, period_s=10, timeout_s=1, success_threshold=1, failure_threshold=3
    )
    assert plan.startup == Probe(port=50051, path=None, failure_threshold=30)


def test_mounts_are_read_only_for_the_kubelets_read_only_volumes_or_when_asked():
    assert launch().mounts == (
        Mount("kube-api-access-x1", "", "/var/run/secrets/kubernetes.io/serviceaccount", read_only=True),
        Mount("tmp", "", "/tmp", read_only=False),
        Mount("settings", "mode", "/etc/app/mode", read_only=True),  # a configMap, readOnly or not
        Mount("tmp", "chat-r1-abc", "/scratch", read_only=True),  # subPathExpr, expanded
    )


def test_python_commands_run_this_venvs_python():
    pod = copy.deepcopy(RUNTIME_POD)
    pod["spec"]["containers"][0].update(command=["python3", "-c", "print(1)"], args=[], workingDir="/work")
    plan = launch(pod)
    assert plan.argv == ["/venv/bin/python", "-c", "print(1)"] and plan.working_dir == "/work"


def test_what_a_pod_refers_to_is_fetched_and_a_missing_reference_keeps_it_waiting():
    assert references(RUNTIME_POD).config_maps == {"settings", "kube-root-ca.crt"}
    assert references(RUNTIME_POD).secrets == {"creds", "other"}
    assert references(RUNTIME_POD).tokens == {TokenSpec((), 3607)}
    with pytest.raises(MissingReference, match='configmap "settings" not found') as missing:
        launch(objects=PodObjects(secrets=OBJECTS.secrets))
    assert missing.value.reason == "CreateContainerConfigError"
    without_key = PodObjects(config_maps={"settings": {"size": b"3"}}, secrets=OBJECTS.secrets)
    with pytest.raises(MissingReference, match='couldn\'t find key mode in configmap "settings"'):
        launch(objects=without_key)


def test_quantities_and_expansion():
    assert [quantity(q) for q in ("500m", "1Gi", "2", "1e3", "1.5k", 3)] == [0.5, 2**30, 2, 1000, 1500, 3]
    assert expand("$(A)-$(B)", {"A": "1"}) == "1-$(B)"
    assert expand("$$(A) costs $5", {"A": "1"}) == "$(A) costs $5"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            lambda spec: spec["volumes"].append({"name": "models", "persistentVolumeClaim": {"claimName": "m"}}),
            "not persistentVolumeClaim",
        ),
        (lambda spec: spec["volumes"].append({"name": "host", "hostPath": {"path": "/"}}), "not hostPath"),
        (
            lambda spec: spec["volumes"][2]["projected"]["sources"].append({"clusterTrustBundle": {"path": "x"}}),
            "not clusterTrustBundle",
        ),
        (lambda spec: spec.update(initContainers=[{"name": "i", "image": "i"}]), "pods with initContainers"),
        (lambda spec: spec.update(hostNetwork=True), "pods with hostNetwork"),
        (lambda spec: spec["containers"].append(copy.deepcopy(spec["containers"][0])), "exactly one container"),
        (lambda spec: spec["containers"][0].pop("command"), "the image entrypoint"),
        (
            lambda spec: spec["containers"][0].update(command=["sleep", "60"]),
            "only commands starting with `shoal`, `python`, `python3`",
        ),
        (
            lambda spec: spec["containers"][0]["env"].append(
                {"name": "K", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPx"}}}
            ),
            "fieldRef status.podIPx",
        ),
        (lambda spec: spec["containers"][0].update(readinessProbe={"exec": {"command": ["true"]}}), "not exec"),
        (lambda spec: spec["containers"][0].update(livenessProbe={"grpc": {"port": 50051}}), "not grpc"),
        (
            lambda spec: spec["containers"][0].update(livenessProbe={"tcpSocket": {"port": "admin"}}),
            "names no container port",
        ),
        (
            lambda spec: spec["containers"][0].update(lifecycle={"preStop": {"sleep": {"seconds": 1}}}),
            "container.lifecycle",
        ),
    ],
)
def test_the_node_refuses_what_it_cannot_run_locally(change, reason):
    pod = copy.deepcopy(RUNTIME_POD)
    change(pod["spec"])
    with pytest.raises(UnsupportedPod, match=re.escape(reason)):
        check_supported(pod, EXECUTABLES)
