"""kubectl against the emulated API server: the commands people and the e2e run on ModelPools."""

import json

import pytest

from tests.cluster_emulator.servers import emulated_api
from tests.support.kubectl import KubectlError, kubectl, kubectl_json

POOL = """
apiVersion: shoal.dev/v1alpha1
kind: ModelPool
metadata: {name: chat}
spec:
  model: {source: embedded, revision: r1}
  replicas: 1
  runtime: {device: cpu}
  resources: {gpus: 0}
"""

# kubectl checks manifests against the server's OpenAPI documents, which the emulator does not
# serve (checking the CRD's schema is the validation hook's job); --validate=false skips that.
APPLY = ("apply", "--validate=false", "-f", "-")

pytestmark = pytest.mark.asyncio


async def test_emulated_kubectl_applies_a_modelpool_and_gets_it_by_short_name(tmp_path):
    async with emulated_api(tmp_path) as cluster:
        assert (await kubectl(cluster.kubeconfig, *APPLY, stdin=POOL)).strip() == "modelpool.shoal.dev/chat created"

        header, row = (await kubectl(cluster.kubeconfig, "get", "mp")).splitlines()
        assert header.split() == ["NAME", "READY", "STABLE", "CANARY", "WEIGHT", "PHASE", "AGE"]
        name, age = row.split()  # no status yet: its columns are blank
        assert name == "chat" and age.endswith("s")
        pool = await kubectl_json(cluster.kubeconfig, "get", "mp", "chat")
        assert pool["kind"] == "ModelPool" and pool["spec"]["model"]["revision"] == "r1"
        metadata = pool["metadata"]
        assert metadata["namespace"] == "default" and metadata["generation"] == 1
        assert metadata["uid"] and metadata["creationTimestamp"].endswith("Z") and int(metadata["resourceVersion"]) > 0
        assert "uid: " + metadata["uid"] in await kubectl(cluster.kubeconfig, "get", "modelpools.shoal.dev/chat", "-o", "yaml")


async def test_emulated_kubectl_scale_writes_spec_replicas_through_the_scale_subresource(tmp_path):
    async with emulated_api(tmp_path) as cluster:
        await kubectl(cluster.kubeconfig, *APPLY, stdin=POOL)
        await kubectl(cluster.kubeconfig, "scale", "mp/chat", "--replicas", "3")

        pool = await kubectl_json(cluster.kubeconfig, "get", "mp", "chat")
        assert pool["spec"]["replicas"] == 3 and pool["metadata"]["generation"] == 2
        scale = json.loads(await kubectl(cluster.kubeconfig, "get", "--raw", "/apis/shoal.dev/v1alpha1/namespaces/default/modelpools/chat/scale"))
        assert scale["apiVersion"] == "autoscaling/v1" and scale["kind"] == "Scale"
        assert scale["spec"] == {"replicas": 3}


async def test_emulated_kubectl_reapply_bumps_generation_on_spec_changes_only(tmp_path):
    async with emulated_api(tmp_path) as cluster:
        await kubectl(cluster.kubeconfig, *APPLY, stdin=POOL)
        status_patch = json.dumps({"status": {"phase": "Ready", "readyReplicas": 1}})
        await kubectl(cluster.kubeconfig, "patch", "mp", "chat", "--subresource=status", "--type=merge", "-p", status_patch)
        after_status = await kubectl_json(cluster.kubeconfig, "get", "mp", "chat")
        assert after_status["status"] == {"phase": "Ready", "readyReplicas": 1}
        assert after_status["metadata"]["generation"] == 1
        header, row = (await kubectl(cluster.kubeconfig, "get", "mp", "chat")).splitlines()
        assert row[header.index("READY") :].split()[:2] == ["1", "Ready"]  # STABLE, CANARY, WEIGHT blank

        assert (await kubectl(cluster.kubeconfig, *APPLY, stdin=POOL)).strip() == "modelpool.shoal.dev/chat unchanged"
        changed = POOL.replace("revision: r1", "revision: r2")
        assert (await kubectl(cluster.kubeconfig, *APPLY, stdin=changed)).strip() == "modelpool.shoal.dev/chat configured"

        pool = await kubectl_json(cluster.kubeconfig, "get", "mp", "chat")
        assert pool["spec"]["model"]["revision"] == "r2" and pool["metadata"]["generation"] == 2
        assert pool["status"] == {"phase": "Ready", "readyReplicas": 1}  # apply leaves status alone
        assert int(pool["metadata"]["resourceVersion"]) > int(after_status["metadata"]["resourceVersion"])


async def test_emulated_kubectl_delete_removes_the_modelpool(tmp_path):
    async with emulated_api(tmp_path) as cluster:
        await kubectl(cluster.kubeconfig, *APPLY, stdin=POOL)
        assert (await kubectl(cluster.kubeconfig, "delete", "mp", "chat")).strip() == 'modelpool.shoal.dev "chat" deleted'
        with pytest.raises(KubectlError, match="NotFound"):
            await kubectl(cluster.kubeconfig, "get", "mp", "chat")


async def test_emulated_kubectl_reapply_of_a_deployment_merges_containers_by_name(tmp_path):
    deployment = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: c, image: img:1, command: [shoal, runtime], ports: [{containerPort: 8001}], env: [{name: A, value: "1"}]}
"""
    async with emulated_api(tmp_path) as cluster:
        await kubectl(cluster.kubeconfig, *APPLY, stdin=deployment)
        # kubectl sends a strategic merge patch naming only the changed fields of container c.
        await kubectl(cluster.kubeconfig, *APPLY, stdin=deployment.replace("img:1", "img:2").replace('"1"', '"2"'))

        applied = await kubectl_json(cluster.kubeconfig, "get", "deployment", "web")
        assert applied["spec"]["template"]["spec"]["containers"] == [
            {"name": "c", "image": "img:2", "command": ["shoal", "runtime"], "ports": [{"containerPort": 8001}], "env": [{"name": "A", "value": "2"}]}
        ]
        assert applied["metadata"]["generation"] == 2
