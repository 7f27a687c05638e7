"""The Kubernetes objects a ModelPool owns, computed from its spec: one Deployment per live
revision, one Service for the pool, and the Secret holding its runtimes' admin token. Pure
functions; applying them is apply.py's job."""

import json
from dataclasses import asdict, dataclass

from shoal.constants import API_VERSION, KIND, POOL_LABEL, REVISION_LABEL
from shoal.constants import RUNTIME_GRPC_PORT as GRPC_PORT
from shoal.constants import RUNTIME_METRICS_PORT as METRICS_PORT
from shoal.operator.spec import PoolSpec

MANAGED_BY = {"app.kubernetes.io/managed-by": "shoal-operator"}
MODEL_MOUNT = "/models"
# The runtimes' RuntimeAdmin token (--admin-token-file): a Secret per pool, made by the operator,
# which calls that service to roll new weights in place (weights_rollout.py).
ADMIN_TOKEN_MOUNT = "/var/run/shoal/runtime-admin"
ADMIN_TOKEN_KEY = "token"
COMPILE_CACHE_MOUNT = "/var/cache/shoal/compile"  # --compile-cache-dir (Triton's kernel cache)
# A runtime of several ranks (spec.parallelism) passes tensors between its processes through shared
# memory (NCCL's intra-node transport, torch.multiprocessing): more than a container's default 64 MiB.
# No sizeLimit: the pages count against the pod's memory (bounded by its limit, where set), and a
# guessed cap would get the pod evicted when NCCL needs more than the guess.
SHM_MOUNT = "/dev/shm"
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


def admin_secret_name(pool: PoolRef) -> str:
    return f"{pool.name}-runtime-admin"


def desired_admin_secret(pool: PoolRef, token: str) -> dict:
    """The token comes from the caller (apply.py makes a random one): this stays a pure function."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": admin_secret_name(pool),
            "namespace": pool.namespace,
            "labels": {POOL_LABEL: pool.name, **MANAGED_BY},
            "ownerReferences": [pool.owner_reference()],
        },
        "stringData": {ADMIN_TOKEN_KEY: token},
    }


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
        "volumes": volumes(pool, spec),
    }
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


def volumes(pool: PoolRef, spec: PoolSpec) -> list[dict]:
    found = [
        # Readable by the runtime's user only (group fsGroup): the token lets its holder pause the
        # runtime and replace its weights.
        {"name": "runtime-admin", "secret": {"secretName": admin_secret_name(pool), "defaultMode": 0o440}}
    ]
    if spec.model.volume_claim:
        found.append(
            {"name": "models", "persistentVolumeClaim": {"claimName": spec.model.volume_claim, "readOnly": True}}
        )
    cache = spec.runtime.compile_cache
    if cache is not None:
        claim = {"persistentVolumeClaim": {"claimName": cache.volume_claim}}
        found.append({"name": "compile-cache", **(claim if cache.volume_claim else {"emptyDir": {}})})
    if spec.parallelism.world_size > 1:
        found.append({"name": "dshm", "emptyDir": {"medium": "Memory"}})
    return found


def volume_mounts(spec: PoolSpec) -> list[dict]:
    mounts = [{"name": "runtime-admin", "mountPath": ADMIN_TOKEN_MOUNT, "readOnly": True}]
    if spec.model.volume_claim:
        mounts.append({"name": "models", "mountPath": MODEL_MOUNT, "readOnly": True})
    if spec.runtime.compile_cache is not None:
        mounts.append({"name": "compile-cache", "mountPath": COMPILE_CACHE_MOUNT})
    if spec.parallelism.world_size > 1:
        mounts.append({"name": "dshm", "mountPath": SHM_MOUNT})
    return mounts


def runtime_container(pool: PoolRef, revision: str, spec: PoolSpec) -> dict:
    runtime = spec.runtime
    env = [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    env += [{"name": name, "value": value} for name, value in runtime.env]
    resources: dict = {}
    if spec.resources.gpus:
        resources["limits"] = {"nvidia.com/gpu": spec.resources.gpus}
    requests = {k: v for k, v in (("cpu", spec.resources.cpu), ("memory", spec.resources.memory)) if v is not None}
    if requests:
        resources["requests"] = requests
    return {
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
        "volumeMounts": volume_mounts(spec),
    }


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
    if spec.speculative.config.enabled:
        args += ["--speculative-config", speculative_config_json(spec)]
    # Only above 1, so that a pool without parallelism keeps its pods' args (and its revision's pods).
    if spec.parallelism.tensor > 1:
        args += ["--tensor-parallel-size", str(spec.parallelism.tensor)]
    if spec.parallelism.pipeline > 1:
        args += ["--pipeline-parallel-size", str(spec.parallelism.pipeline)]
    # $(POD_IP): the kubelet expands it from the env above; probes and the router reach the pod there.
    args += ["--host", "$(POD_IP)", "--port", str(GRPC_PORT), "--metrics-port", str(METRICS_PORT)]
    args += ["--pool", pool.router_pool, "--revision", revision]
    # Always, so that naming weights later changes no pod: every pod starts on the source's weights
    # (version "initial") and the operator rolls spec.model.weights onto it (weights_rollout.py).
    args += ["--admin-token-file", f"{ADMIN_TOKEN_MOUNT}/{ADMIN_TOKEN_KEY}"]
    if runtime.compile_cache is not None:
        args += ["--compile-cache-dir", COMPILE_CACHE_MOUNT]
    return args + list(runtime.args)


def speculative_config_json(spec: PoolSpec) -> str:
    """--speculative-config's JSON: every field of the runtime's SpeculativeConfig under its own name
    (an unset disableBatchSize left out), so the pool, not the runtime's defaults, says what runs."""
    config = {key: value for key, value in asdict(spec.speculative.config).items() if value is not None}
    return json.dumps(config, separators=(",", ":"))


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
