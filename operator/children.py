"""The Kubernetes objects a ModelPool owns, computed from its spec: one Deployment per live
revision and one Service for the pool. Pure functions; applying them is apply.py's job."""

from dataclasses import dataclass

from shoal.constants import API_VERSION, KIND, POOL_LABEL, REVISION_LABEL
from shoal.constants import RUNTIME_GRPC_PORT as GRPC_PORT
from shoal.constants import RUNTIME_METRICS_PORT as METRICS_PORT
from shoal.operator.spec import PoolSpec

MANAGED_BY = {"app.kubernetes.io/managed-by": "shoal-operator"}
MODEL_MOUNT = "/models"
# SIGTERM makes the runtime finish what it is generating; long answers need time.
TERMINATION_GRACE_S = 60


@dataclass(frozen=True)
class PoolRef:
    name: str
    namespace: str
    uid: str

    @property
    def router_pool(self) -> str:
        """The pool's name at the router and on metrics: unique across namespaces."""
        return f"{self.namespace}.{self.name}"

    def owner_reference(self) -> dict:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def deployment_name(pool: PoolRef, revision: str) -> str:
    return f"{pool.name}-{revision}"


def revision_labels(pool: PoolRef, revision: str) -> dict:
    return {POOL_LABEL: pool.name, REVISION_LABEL: revision}


def pool_selector(pool: PoolRef) -> str:
    return f"{POOL_LABEL}={pool.name}"


def desired_deployment(pool: PoolRef, revision: str, spec: PoolSpec, replicas: int) -> dict:
    labels = revision_labels(pool, revision)
    pod_labels = {
        **labels,
        "app.kubernetes.io/name": "shoal-runtime",
        "app.kubernetes.io/instance": pool.name,
        **MANAGED_BY,
    }
    pod_spec = {
        "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
        "containers": [runtime_container(pool, revision, spec)],
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000},
    }
    if spec.model.volume_claim:
        pod_spec["volumes"] = [
            {"name": "models", "persistentVolumeClaim": {"claimName": spec.model.volume_claim, "readOnly": True}}
        ]
    if spec.placement.node_selector:
        pod_spec["nodeSelector"] = dict(spec.placement.node_selector)
    if spec.placement.tolerations:
        pod_spec["tolerations"] = list(spec.placement.tolerations)
    if spec.placement.affinity:
        pod_spec["affinity"] = spec.placement.affinity
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(pool, revision),
            "namespace": pool.namespace,
            "labels": {**labels, **MANAGED_BY},
            "ownerReferences": [pool.owner_reference()],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(METRICS_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": pod_spec,
            },
        },
    }


def runtime_container(pool: PoolRef, revision: str, spec: PoolSpec) -> dict:
    runtime, model = spec.runtime, spec.model
    env = [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    env += [{"name": name, "value": value} for name, value in runtime.env]
    resources: dict = {}
    if spec.resources.gpus:
        resources["limits"] = {"nvidia.com/gpu": spec.resources.gpus}
    requests = {k: v for k, v in (("cpu", spec.resources.cpu), ("memory", spec.resources.memory)) if v is not None}
    if requests:
        resources["requests"] = requests
    container = {
        "name": "runtime",
        "image": runtime.image,
        "imagePullPolicy": runtime.image_pull_policy,
        "command": ["shoal", "runtime"],
        "args": runtime_args(pool, revision, spec),
        "env": env,
        "ports": [{"name": "grpc", "containerPort": GRPC_PORT}, {"name": "metrics", "containerPort": METRICS_PORT}],
        # /ready turns true once the model is loaded; a slow first load must not look dead.
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "metrics"}, "periodSeconds": 2, "failureThreshold": 3},
        "startupProbe": {
            "httpGet": {"path": "/health", "port": "metrics"},
            "periodSeconds": 5,
            "failureThreshold": 120,
        },
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": "metrics"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "resources": resources,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if model.volume_claim:
        container["volumeMounts"] = [{"name": "models", "mountPath": MODEL_MOUNT, "readOnly": True}]
    return container


def runtime_args(pool: PoolRef, revision: str, spec: PoolSpec) -> list[str]:
    runtime, model = spec.runtime, spec.model
    if model.source == "embedded":
        args = ["--model", "default"]
    elif model.source == "random":
        args = ["--model", model.config, "--load-format", "dummy"]
    else:
        args = ["--model", model.path]
    args += ["--served-model-name", model.served_name or pool.name, "--dtype", model.dtype, "--device", runtime.device]
    args += [
        "--max-num-seqs",
        str(runtime.max_num_seqs),
        "--max-num-batched-tokens",
        str(runtime.max_num_batched_tokens),
    ]
    args += ["--block-size", str(runtime.block_size)]
    if runtime.max_model_len is not None:
        args += ["--max-model-len", str(runtime.max_model_len)]
    if runtime.device == "cuda":
        args += ["--gpu-memory-utilization", str(runtime.gpu_memory_utilization)]
    if runtime.kv_cache_memory is not None:
        args += ["--kv-cache-memory", runtime.kv_cache_memory]
    if runtime.max_waiting is not None:
        args += ["--max-waiting", str(runtime.max_waiting)]
    # $(POD_IP): the kubelet expands it from the env above; probes and the router reach the pod there.
    args += ["--host", "$(POD_IP)", "--port", str(GRPC_PORT), "--metrics-port", str(METRICS_PORT)]
    args += ["--pool", pool.router_pool, "--revision", revision]
    return args + list(runtime.args)


def desired_service(pool: PoolRef) -> dict:
    """One Service for the pool's runtimes (all revisions): for direct gRPC clients and scraping."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": pool.name,
            "namespace": pool.namespace,
            "labels": {POOL_LABEL: pool.name, **MANAGED_BY},
            "ownerReferences": [pool.owner_reference()],
        },
        "spec": {
            "selector": {POOL_LABEL: pool.name},
            "ports": [
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    }
