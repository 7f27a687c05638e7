"""Volumes on the local node, seen from inside a pod: ConfigMap, Secret, emptyDir, downward API and
the service-account volume that admission adds, each at its mount path (and only there: the pod's
/tmp is its own). With its mounted token a pod talks to the API server in-cluster, through the
node's proxy on the gateway, with exactly its service account's RBAC."""

import base64
import uuid
from pathlib import Path

import pytest

from tests.cluster.pods import create, log_of, phase, pod, pods_path, printed_json, wait_pod
from tests.support.api_client import ApiClient
from tests.support.api_paths import object_path
from tests.support.cluster import Cluster
from tests.support.local_node import SOFTWARE

pytestmark = pytest.mark.asyncio

READ_VOLUMES = """
import json, os, pathlib, sys
def mode(path):
    return oct(os.stat(path).st_mode & 0o777)
marker = pathlib.Path("/tmp") / sys.argv[1]
marker.write_text("private")
try:
    open("/etc/app/config/new", "w")
    writable = True
except OSError:
    writable = False
sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
print(json.dumps({
    "config": open("/etc/app/config/settings.yaml").read(),
    "config_mode": mode("/etc/app/config/settings.yaml"),
    "config_writable": writable,
    "one_key": open("/etc/app/one.yaml").read(),
    "secret": open("/etc/app/secret/password").read(),
    "secret_mode": mode("/etc/app/secret/password"),
    "labels": open("/etc/podinfo/labels").read(),
    "cpu_m": open("/etc/podinfo/cpu").read(),
    "tmp": os.listdir("/tmp"),
    "sa_files": sorted(os.listdir(sa)),
    "namespace": open(sa + "namespace").read(),
    "ca": open(sa + "ca.crt").read().startswith("-----BEGIN CERTIFICATE-----"),
    "token_parts": len(open(sa + "token").read().split(".")),
    "env": {
        key: os.environ.get(key)
        for key in ("MODE", "DB_PASSWORD", "PREFIX_settings.yaml", "KUBERNETES_SERVICE_PORT")
    },
    "cwd": os.getcwd(),
}))
"""
# GET the namespace's pods in-cluster, as client libraries do: at KUBERNETES_SERVICE_HOST, and at
# the Service's name (kopf's way); prints both HTTP statuses.
LIST_PODS = """
import json, os, ssl, urllib.error, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
namespace, token = open(sa + "namespace").read(), open(sa + "token").read()
context = ssl.create_default_context(cafile=sa + "ca.crt")
statuses = []
in_cluster = os.environ["KUBERNETES_SERVICE_HOST"] + ":" + os.environ["KUBERNETES_SERVICE_PORT"]
for host in (in_cluster, "kubernetes.default.svc"):
    url = f"https://{host}/api/v1/namespaces/{namespace}/pods"
    request = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
    try:
        statuses.append(urllib.request.urlopen(request, context=context, timeout=10).status)
    except urllib.error.HTTPError as error:
        statuses.append(error.code)
print(json.dumps(statuses))
"""


def config_map(name: str, data: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


async def test_a_pod_sees_each_volume_at_its_mount_path(cluster: Cluster, api: ApiClient, namespace: str):
    await create(
        api,
        object_path("v1", "configmaps", namespace),
        config_map("app", {"settings.yaml": "level: 3\n", "one.yaml": "one: 1\n"}),
    )
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db"},
        "data": {"password": base64.b64encode(b"hunter2").decode()},
    }
    await create(api, object_path("v1", "secrets", namespace), secret)
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    reader = pod(
        "reader",
        READ_VOLUMES,
        metadata={"labels": {"app": "reader", "tier": "test"}},
        restartPolicy="Never",
        container={
            "args": [marker],
            "workingDir": "/etc/app",
            "resources": {"requests": {"cpu": "250m"}},
            "securityContext": {"readOnlyRootFilesystem": True, "runAsUser": 1000},  # not enforced: said so
            "env": [
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "one.yaml"}}},
                {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
            ],
            "envFrom": [{"configMapRef": {"name": "app"}, "prefix": "PREFIX_"}],
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/app/config", "readOnly": True},
                {"name": "config", "mountPath": "/etc/app/one.yaml", "subPath": "one.yaml"},
                {"name": "secret", "mountPath": "/etc/app/secret"},
                {"name": "podinfo", "mountPath": "/etc/podinfo"},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
        },
        volumes=[
            {
                "name": "config",
                "configMap": {
                    "name": "app",
                    "items": [
                        {"key": "settings.yaml", "path": "settings.yaml", "mode": 0o440},
                        {"key": "one.yaml", "path": "one.yaml"},
                    ],
                },
            },
            {"name": "secret", "secret": {"secretName": "db", "defaultMode": 0o400}},
            {
                "name": "podinfo",
                "downwardAPI": {
                    "items": [
                        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                        {
                            "path": "cpu",
                            "resourceFieldRef": {"containerName": "main", "resource": "requests.cpu", "divisor": "1m"},
                        },
                    ]
                },
            },
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
    )
    await create(api, pods_path(namespace), reader)
    done = await wait_pod(
        api, namespace, "reader", lambda p: phase(p) in ("Succeeded", "Failed"), what="the reader done"
    )
    assert phase(done) == "Succeeded", log_of(cluster, namespace, "reader")

    seen = printed_json(cluster, namespace, "reader")
    assert (seen["config"], seen["config_mode"], seen["config_writable"]) == ("level: 3\n", "0o440", False)
    assert seen["one_key"] == "one: 1\n"
    assert (seen["secret"], seen["secret_mode"]) == ("hunter2", "0o400")
    assert seen["labels"] == 'app="reader"\ntier="test"' and seen["cpu_m"] == "250"
    # The pod's own /tmp: its marker, none of the host's files, but the node's software where it
    # lives under /tmp (a checkout there stays visible, as an image's files would).
    software_in_tmp = {folder.relative_to("/tmp").parts[0] for folder in SOFTWARE if folder.is_relative_to("/tmp")}
    assert set(seen["tmp"]) - software_in_tmp == {marker} and not (Path("/tmp") / marker).exists()
    assert seen["sa_files"] == ["ca.crt", "namespace", "token"] and seen["namespace"] == namespace
    assert seen["ca"] and seen["token_parts"] == 3  # a JWT
    assert seen["env"] == {
        "MODE": "one: 1\n",
        "DB_PASSWORD": "hunter2",
        "PREFIX_settings.yaml": "level: 3\n",
        "KUBERNETES_SERVICE_PORT": "443",
    }
    assert seen["cwd"] == "/etc/app"


async def test_a_pod_waits_for_a_config_map_it_needs_then_runs(cluster: Cluster, api: ApiClient, namespace: str):
    waiting = pod(
        "late",
        "print(open('/config/greeting').read())",
        restartPolicy="Never",
        container={"volumeMounts": [{"name": "config", "mountPath": "/config"}]},
        volumes=[{"name": "config", "configMap": {"name": "late"}}],
    )
    await create(api, pods_path(namespace), waiting)
    pending = await wait_pod(
        api,
        namespace,
        "late",
        lambda p: "waiting" in (p.get("status", {}).get("containerStatuses") or [{}])[0].get("state", {}),
        what="the pod waiting",
    )
    assert phase(pending) == "Pending" and pending["status"]["podIP"]
    assert pending["status"]["containerStatuses"][0]["state"]["waiting"] == {
        "reason": "ContainerCreating",
        "message": 'configmap "late" not found',
    }

    await create(api, object_path("v1", "configmaps", namespace), config_map("late", {"greeting": "hello"}))
    await wait_pod(
        api, namespace, "late", lambda p: phase(p) == "Succeeded", what="the pod run once its ConfigMap is there"
    )
    assert log_of(cluster, namespace, "late").strip() == "hello"


async def test_a_pod_talks_to_the_api_server_in_cluster_with_its_service_accounts_rbac(
    cluster: Cluster, api: ApiClient, namespace: str
):
    for account in ("reader", "nobody"):
        await create(
            api,
            object_path("v1", "serviceaccounts", namespace),
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}},
        )
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "list-pods"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "reader-lists-pods"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "list-pods"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
    }
    await create(api, object_path("rbac.authorization.k8s.io/v1", "roles", namespace), role)
    await create(api, object_path("rbac.authorization.k8s.io/v1", "rolebindings", namespace), binding)
    for account in ("reader", "nobody"):
        await create(
            api, pods_path(namespace), pod(account, LIST_PODS, serviceAccountName=account, restartPolicy="Never")
        )
    for account, expected in (("reader", [200, 200]), ("nobody", [403, 403])):
        done = await wait_pod(
            api, namespace, account, lambda p: phase(p) in ("Succeeded", "Failed"), what=f"{account} done"
        )
        assert phase(done) == "Succeeded", log_of(cluster, namespace, account)
        assert printed_json(cluster, namespace, account) == expected, account
