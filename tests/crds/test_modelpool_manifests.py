"""ModelPool manifests as the real API server meets them from `kubectl apply` (a dry run): what a
valid one is stored as once defaulted, and which field a bad one is refused for, by the CRD's
schema or its CEL rules."""

import pytest

from tests.crds.files import MODELPOOL_CRD
from tests.support.dry_run import fields_named

MODEL = {"revision": "v1"}


def pool(spec: dict | None) -> dict:
    return {"apiVersion": "shoal.dev/v1alpha1", "kind": "ModelPool", "metadata": {"name": "chat"}, "spec": spec}


def stored_spec(server_dry_run, spec: dict | None) -> dict:
    (stored,) = server_dry_run.apply(pool(spec))
    return stored["spec"]


DEFAULT_STEPS = [{"weight": 5, "pause": "2m"}, {"weight": 25, "pause": "5m"}, {"weight": 50, "pause": "5m"}]
DEFAULT_ANALYSIS = {
    "maxP99LatencyRatio": 1.3,
    "minP99LatencyIncreaseSeconds": 0.05,
    "maxErrorRate": 0.01,
    "maxPreemptions": 0,
    "maxOomErrors": 0,
    "minKvFreeFraction": 0.1,
    "minSamples": 200,
    "windowSeconds": 60,
}
DEFAULTED_MINIMAL_SPEC = {
    "model": {"revision": "v1", "source": "embedded", "dtype": "auto"},
    "replicas": 1,
    "runtime": {
        "image": "ghcr.io/shoal-dev/shoal-runtime:0.1.0",
        "imagePullPolicy": "IfNotPresent",
        "device": "cuda",
        "maxNumSeqs": 256,
        "maxNumBatchedTokens": 8192,
        "blockSize": 16,
    },  # no gpuMemoryUtilization: it has no schema default (the operator's 0.9 applies), see the CRD
    "resources": {"gpus": 1},
    "rollout": {"steps": DEFAULT_STEPS, "analysis": DEFAULT_ANALYSIS, "progressDeadline": "10m"},
    "qos": {
        "maxConcurrencyPerReplica": 16,
        "realtimeTtftTargetSeconds": 1.0,
        "batchShareMin": 0.1,
        "batchShareMax": 0.5,
    },
}

# Every field the schema declares, none at its default: stored exactly as given.
FULL_SPEC = {
    "model": {
        "source": "path",
        "path": "/models/Llama-3.1-8B-Instruct",
        "config": "/models/Llama-3.1-8B-Instruct",
        "volumeClaim": "models",
        "revision": "llama8b-r2",
        "dtype": "bfloat16",
        "servedName": "llama-3.1-8b",
        "weights": {"version": "step-120", "path": "/models/runs/7/step-120"},
    },
    "replicas": 3,
    "runtime": {
        "image": "registry.example.com/shoal-runtime:0.2.0",
        "imagePullPolicy": "Always",
        "device": "cuda",
        "maxNumSeqs": 128,
        "maxNumBatchedTokens": 16384,
        "maxModelLen": 32768,
        "gpuMemoryUtilization": 0.85,
        "kvCacheMemory": "20GiB",
        "blockSize": 32,
        "maxWaiting": 2048,
        "args": ["--enforce-eager"],
        "env": [{"name": "HF_HUB_OFFLINE", "value": "1"}],
        "compileCache": {"volumeClaim": "triton-cache"},
    },
    "resources": {"gpus": 4, "cpu": "7500m", "memory": "96Gi"},
    "parallelism": {"tensor": 4, "pipeline": 1},
    "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
    "rollout": {
        "steps": [{"weight": 10, "pause": "90s"}, {"weight": 100, "pause": "1h30m"}],
        "analysis": {
            "maxP99LatencyRatio": 2.0,
            "minP99LatencyIncreaseSeconds": 0.2,
            "maxErrorRate": 0.05,
            "maxPreemptions": 3,
            "maxOomErrors": 2,
            "minKvFreeFraction": 0.2,
            "minSamples": 50,
            "windowSeconds": 300,
        },
        "progressDeadline": "30m",
    },
    "qos": {
        "classes": ["batch"],
        "maxConcurrencyPerReplica": 64,
        "realtimeTtftTargetSeconds": 0.25,
        "batchShareMin": 0.2,
        "batchShareMax": 0.8,
    },
    "tenants": [{"name": "search", "maxConcurrent": 100, "tokensPerMinute": 1_000_000}, {"name": "evals"}],
    "coldStart": {"enabled": True, "maxQueued": 32, "maxWaitSeconds": 45},
    "speculative": {
        "method": "ngram",
        "numSpeculativeTokens": 6,
        "promptLookupMin": 2,
        "promptLookupMax": 4,
        "disableBatchSize": 64,
        "minAcceptance": 0.3,
        "qosClasses": ["batch"],
    },
    "autoscaling": {
        "minReplicas": 0,
        "maxReplicas": 12,
        "metrics": [{"type": "ttftP95", "target": 0.5}, {"type": "kvCacheUsage", "target": 0.7}],
        "behavior": {
            "scaleUp": {
                "stabilizationWindowSeconds": 30,
                "maxStepReplicas": 2,
                "maxStepPercent": 50,
                "periodSeconds": 60,
            },
            "scaleDown": {
                "stabilizationWindowSeconds": 600,
                "maxStepReplicas": 1,
                "maxStepPercent": 10,
                "periodSeconds": 120,
            },
        },
        "tolerance": 0.05,
        "scaleToZeroAfterSeconds": 900,
        "rollbackCooldownSeconds": 120,
    },
}


def test_a_minimal_pool_is_stored_with_every_default(server_dry_run):
    assert stored_spec(server_dry_run, {"model": MODEL}) == DEFAULTED_MINIMAL_SPEC


def test_a_full_pool_is_stored_as_given(server_dry_run):
    assert stored_spec(server_dry_run, FULL_SPEC) == FULL_SPEC


def _declared_paths(schema: dict, path: str = "") -> list[str]:
    """The schema's fields (`.spec.tenants[*].name`); not the keys of maps (nodeSelector's)."""
    paths = [path]
    for name, child in schema.get("properties", {}).items():
        paths += _declared_paths(child, f"{path}.{name}")
    if "items" in schema:
        paths += _declared_paths(schema["items"], f"{path}[*]")
    return paths


def _value_paths(value, path=".spec"):
    yield path
    if isinstance(value, dict):
        for name, child in value.items():
            yield from _value_paths(child, f"{path}.{name}")
    elif isinstance(value, list):
        for item in value:
            yield from _value_paths(item, f"{path}[*]")


# Fields the CRD refuses beside others FULL_SPEC sets; VALID stores each. The deprecated name of one
# (the CRD refuses both at once), and the draft model (its runtime runs it on one GPU, FULL_SPEC's on 4).
LEFT_OUT = {".spec.runtime.kvCacheFraction", ".spec.speculative.draftModel"}


def test_the_full_pool_sets_every_declared_field():
    (version,) = MODELPOOL_CRD["spec"]["versions"]
    declared = {path for path in _declared_paths(version["schema"]["openAPIV3Schema"]) if path.startswith(".spec")}
    assert declared - set(_value_paths(FULL_SPEC)) == LEFT_OUT


def _at(obj: dict, dotted: str):
    for name in dotted.split("."):
        obj = obj[name]
    return obj


# id: (spec, {dotted path in the stored spec: value it must have})
VALID = {
    "runtime {} gets its fields' defaults": (
        {"model": MODEL, "runtime": {}},
        {"runtime": DEFAULTED_MINIMAL_SPEC["runtime"]},
    ),
    "runtime left empty in YAML (null) gets defaults": (
        {"model": MODEL, "runtime": None, "qos": None},
        {"runtime.maxNumSeqs": 256, "qos.batchShareMax": 0.5},
    ),
    "given runtime fields are kept, the others defaulted": (
        {"model": MODEL, "runtime": {"device": "cpu", "maxNumSeqs": 8}, "resources": {"gpus": 0}},
        {"runtime.device": "cpu", "runtime.maxNumSeqs": 8, "runtime.blockSize": 16, "resources.gpus": 0},
    ),
    "steps without a pause hold 1m each": (
        {"model": MODEL, "rollout": {"steps": [{"weight": 20}, {"weight": 70, "pause": "30s"}]}},
        {
            "rollout.steps": [{"weight": 20, "pause": "1m"}, {"weight": 70, "pause": "30s"}],
            "rollout.progressDeadline": "10m",
        },
    ),
    "a partial analysis gets the other thresholds' defaults": (
        {"model": MODEL, "rollout": {"analysis": {"maxErrorRate": 0.05}}},
        {"rollout.analysis": {**DEFAULT_ANALYSIS, "maxErrorRate": 0.05}, "rollout.steps": DEFAULT_STEPS},
    ),
    "one step straight to 100%": (
        {"model": MODEL, "rollout": {"steps": [{"weight": 100}]}},
        {"rollout.steps": [{"weight": 100, "pause": "1m"}]},
    ),
    "a model from a PVC": (
        {"model": {"revision": "v1", "source": "path", "path": "/models/qwen", "volumeClaim": "models"}},
        {"model.path": "/models/qwen", "model.dtype": "auto"},
    ),
    "random weights from a config": (
        {"model": {"revision": "v1", "source": "random", "config": "/configs/llama-3.1-8b"}},
        {"model.source": "random"},
    ),
    "scaled to zero": ({"model": MODEL, "replicas": 0}, {"replicas": 0}),
    "cpu as an integer, memory as a quantity": (
        {"model": MODEL, "resources": {"cpu": 2, "memory": "16Gi"}},
        {"resources": {"cpu": 2, "memory": "16Gi", "gpus": 1}},
    ),
    "cpu in millicores": ({"model": MODEL, "resources": {"cpu": "500m"}}, {"resources.cpu": "500m"}),
    "a pool taking batch requests only": (
        {"model": MODEL, "qos": {"classes": ["batch"]}},
        {"qos.classes": ["batch"], "qos.batchShareMax": 0.5},
    ),
    "batch shares equal": (
        {"model": MODEL, "qos": {"batchShareMin": 0.3, "batchShareMax": 0.3}},
        {"qos.batchShareMin": 0.3},
    ),
    # CEL compares a number field as a double even when written as an integer (0.5 vs 0 is no type error).
    "batchShareMin written as an integer": (
        {"model": MODEL, "qos": {"batchShareMin": 0}},
        {"qos.batchShareMin": 0, "qos.batchShareMax": 0.5},
    ),
    "tolerations keep whatever fields they have": (
        {"model": MODEL, "tolerations": [{"key": "gpu", "operator": "Exists", "tolerationSeconds": 30}]},
        {"tolerations": [{"key": "gpu", "operator": "Exists", "tolerationSeconds": 30}]},
    ),
    "the deprecated kvCacheFraction is kept as given, with no gpuMemoryUtilization defaulted beside it": (
        {"model": MODEL, "runtime": {"kvCacheFraction": 0.8}},
        {"runtime": {**DEFAULTED_MINIMAL_SPEC["runtime"], "kvCacheFraction": 0.8}},
    ),
    "speculative {} gets its fields' defaults, off": (
        {"model": MODEL, "speculative": {}},
        {
            "speculative": {
                "method": "none",
                "numSpeculativeTokens": 4,
                "promptLookupMin": 1,
                "promptLookupMax": 3,
                "minAcceptance": 0.2,
                "qosClasses": ["realtime", "batch"],
            }
        },
    ),
    "speculative ngram with lookup lengths equal and no QoS class": (
        {
            "model": MODEL,
            "speculative": {"method": "ngram", "promptLookupMin": 2, "promptLookupMax": 2, "qosClasses": []},
        },
        {"speculative.promptLookupMax": 2, "speculative.qosClasses": []},
    ),
    "speculative draft_model with its draftModel": (
        {"model": MODEL, "speculative": {"method": "draft_model", "draftModel": "/models/small"}},
        {"speculative.method": "draft_model", "speculative.draftModel": "/models/small"},
    ),
    "parallelism {} gets its fields' defaults, one GPU": (
        {"model": MODEL, "parallelism": {}},
        {"parallelism": {"tensor": 1, "pipeline": 1}, "resources.gpus": 1},
    ),
    "without parallelism, any GPU count as before": (
        {"model": MODEL, "resources": {"gpus": 2}},
        {"resources.gpus": 2},
    ),
    "tensor 2 on 2 GPUs": (
        {"model": MODEL, "parallelism": {"tensor": 2}, "resources": {"gpus": 2}},
        {"parallelism": {"tensor": 2, "pipeline": 1}},
    ),
    "tensor 8, a whole node of 8 GPUs": (
        {"model": MODEL, "parallelism": {"tensor": 8}, "resources": {"gpus": 8}},
        {"parallelism.tensor": 8, "resources.gpus": 8},
    ),
    "tensor 4 x pipeline 2 on a CPU pool": (
        {
            "model": MODEL,
            "parallelism": {"tensor": 4, "pipeline": 2},
            "runtime": {"device": "cpu"},
            "resources": {"gpus": 0},
        },
        {"parallelism.pipeline": 2, "resources.gpus": 0},
    ),
    "tensor 2 on cpu, no GPU": (
        {"model": MODEL, "parallelism": {"tensor": 2}, "runtime": {"device": "cpu"}, "resources": {"gpus": 0}},
        {"parallelism.tensor": 2, "resources.gpus": 0},
    ),
    "a draft model at tensor 1": (
        {
            "model": MODEL,
            "parallelism": {"tensor": 1},
            "speculative": {"method": "draft_model", "draftModel": "/models/small"},
        },
        {"speculative.method": "draft_model"},
    ),
    "coldStart {} gets its fields' defaults": (
        {"model": MODEL, "coldStart": {}},
        {"coldStart": {"enabled": True, "maxQueued": 64, "maxWaitSeconds": 120}},
    ),
    "autoscaling with only maxReplicas gets every default": (
        {"model": MODEL, "autoscaling": {"maxReplicas": 4}},
        {
            "autoscaling": {
                "maxReplicas": 4,
                "minReplicas": 1,
                "metrics": [{"type": "kvCacheUsage", "target": 0.8}, {"type": "waitingPerReplica", "target": 2}],
                "behavior": {
                    "scaleUp": {"stabilizationWindowSeconds": 0, "periodSeconds": 15},
                    "scaleDown": {"stabilizationWindowSeconds": 300, "periodSeconds": 15},
                },
                "tolerance": 0.1,
                "scaleToZeroAfterSeconds": 300,
                "rollbackCooldownSeconds": 300,
            },
            "replicas": 1,
        },
    ),
    "autoscaling between zero and one replica": (
        {"model": MODEL, "autoscaling": {"minReplicas": 0, "maxReplicas": 1}},
        {"autoscaling.minReplicas": 0},
    ),
    "autoscaling with minReplicas equal to maxReplicas": (
        {"model": MODEL, "autoscaling": {"minReplicas": 3, "maxReplicas": 3}},
        {"autoscaling.maxReplicas": 3},
    ),
    "a kvCacheUsage target of 1, written as an integer": (
        {"model": MODEL, "autoscaling": {"maxReplicas": 3, "metrics": [{"type": "kvCacheUsage", "target": 1}]}},
        {"autoscaling.metrics": [{"type": "kvCacheUsage", "target": 1}]},
    ),
    "tenants with distinct names": (
        {"model": MODEL, "tenants": [{"name": "a"}, {"name": "b", "maxConcurrent": 4}]},
        {"tenants": [{"name": "a"}, {"name": "b", "maxConcurrent": 4}]},
    ),
}


@pytest.mark.parametrize("spec, expected", VALID.values(), ids=VALID.keys())
def test_valid_pool_is_stored_defaulted(server_dry_run, spec, expected):
    stored = stored_spec(server_dry_run, spec)
    assert {path: _at(stored, path) for path in expected} == expected


def steps(*weights: int) -> dict:
    return {"model": MODEL, "rollout": {"steps": [{"weight": w} for w in weights]}}


# id: (spec, the one field rejected, what the message says about it)
INVALID = {
    "spec left empty": (None, "spec", "Required value"),
    "no model": ({}, "spec.model", "Required value"),
    "no model.revision": ({"model": {}}, "spec.model.revision", "Required value"),
    "revision with capitals and underscore": (
        {"model": {"revision": "V1_final"}},
        "spec.model.revision",
        "should match",
    ),
    "revision of 41 characters": ({"model": {"revision": "r" * 41}}, "spec.model.revision", "should match"),
    "unknown model.source": (
        {"model": {"revision": "v1", "source": "s3"}},
        "spec.model.source",
        'Unsupported value: "s3": supported values: "embedded", "path", "random"',
    ),
    "source path without a path": (
        {"model": {"revision": "v1", "source": "path"}},
        "spec.model.path",
        "Required value: model.path is required when model.source is 'path'",
    ),
    "source random without a config": (
        {"model": {"revision": "v1", "source": "random"}},
        "spec.model.config",
        "Required value: model.config",
    ),
    "embedded with a path": (
        {"model": {"revision": "v1", "source": "embedded", "path": "/models/x"}},
        "spec.model.path",
        "Forbidden: model.path does not apply to the embedded model",
    ),
    "embedded by default, with a config": (
        {"model": {"revision": "v1", "config": "/configs/x"}},
        "spec.model.config",
        "Forbidden: model.config does not apply",
    ),
    "volumeClaim not a DNS name": (
        {"model": {"revision": "v1", "volumeClaim": "My_Claim"}},
        "spec.model.volumeClaim",
        "should match",
    ),
    "negative replicas": (
        {"model": MODEL, "replicas": -1},
        "spec.replicas",
        "Invalid value: -1: spec.replicas in body should be greater than or equal to 0",
    ),
    "replicas as a string": (
        {"model": MODEL, "replicas": "3"},
        "spec.replicas",
        'Invalid value: "string": spec.replicas in body must be of type integer',
    ),
    "gpuMemoryUtilization 1.5": (
        {"model": MODEL, "runtime": {"gpuMemoryUtilization": 1.5}},
        "spec.runtime.gpuMemoryUtilization",
        "should be less than or equal to 0.99",
    ),
    "kvCacheFraction 1.5": (
        {"model": MODEL, "runtime": {"kvCacheFraction": 1.5}},
        "spec.runtime.kvCacheFraction",
        "should be less than or equal to 0.99",
    ),
    "both gpuMemoryUtilization and its deprecated name kvCacheFraction": (
        {"model": MODEL, "runtime": {"gpuMemoryUtilization": 0.8, "kvCacheFraction": 0.8}},
        "spec.runtime.kvCacheFraction",
        "Forbidden: runtime.kvCacheFraction is the deprecated name of runtime.gpuMemoryUtilization",
    ),
    "blockSize 12": ({"model": MODEL, "runtime": {"blockSize": 12}}, "spec.runtime.blockSize", "Unsupported value: 12"),
    "env name with a dash": (
        {"model": MODEL, "runtime": {"env": [{"name": "HF-TOKEN"}]}},
        "spec.runtime.env[0].name",
        "should match",
    ),
    "device cpu keeping the default gpus 1": (
        {"model": MODEL, "runtime": {"device": "cpu"}},
        "spec.resources.gpus",
        "resources.gpus must be 0 when runtime.device is cpu",
    ),
    "device cuda with gpus 0": (
        {"model": MODEL, "resources": {"gpus": 0}},
        "spec.resources.gpus",
        "runtime.device cuda needs resources.gpus >= 1",
    ),
    # On cpu: with cuda, resources.gpus would be refused too (it cannot equal a size of 0).
    "tensor 0": (
        {"model": MODEL, "parallelism": {"tensor": 0}, "runtime": {"device": "cpu"}, "resources": {"gpus": 0}},
        "spec.parallelism.tensor",
        "should be greater than or equal to 1",
    ),
    "tensor 4 x pipeline 4, more than one node": (
        {
            "model": MODEL,
            "parallelism": {"tensor": 4, "pipeline": 4},
            "runtime": {"device": "cpu"},
            "resources": {"gpus": 0},
        },
        "spec.parallelism",
        "Invalid value: parallelism.tensor x parallelism.pipeline must be at most 8",
    ),
    "tensor 2 keeping the default gpus 1": (
        {"model": MODEL, "parallelism": {"tensor": 2}},
        "spec.resources.gpus",
        "resources.gpus must equal parallelism.tensor x parallelism.pipeline when runtime.device is cuda",
    ),
    "pipeline stages on a GPU pool": (
        {"model": MODEL, "parallelism": {"pipeline": 2}, "resources": {"gpus": 2}},
        "spec.parallelism.pipeline",
        "parallelism.pipeline above 1 runs on CPU pools only so far",
    ),
    "parallelism {} beside 2 GPUs": (
        {"model": MODEL, "parallelism": {}, "resources": {"gpus": 2}},
        "spec.resources.gpus",
        "resources.gpus must equal parallelism.tensor x parallelism.pipeline",
    ),
    "a draft model at tensor 2": (
        {
            "model": MODEL,
            "parallelism": {"tensor": 2},
            "resources": {"gpus": 2},
            "speculative": {"method": "draft_model", "draftModel": "/models/small"},
        },
        "spec.speculative.method",
        "Forbidden: speculative.method draft_model needs parallelism.tensor x parallelism.pipeline of 1",
    ),
    "unknown field in parallelism": (
        {"model": MODEL, "parallelism": {"data": 2}},
        "spec.parallelism.data",
        "unknown field",
    ),
    "memory in GB": ({"model": MODEL, "resources": {"memory": "16GB"}}, "spec.resources.memory", "should match"),
    "cpu in words": ({"model": MODEL, "resources": {"cpu": "two"}}, "spec.resources.cpu", "should match"),
    "cpu as a fractional number": (
        {"model": MODEL, "resources": {"cpu": 1.5}},
        "spec.resources.cpu",
        "must be of type integer,string",
    ),
    "nodeSelector value not a string": (
        {"model": MODEL, "nodeSelector": {"gpu": True}},
        "spec.nodeSelector.gpu",
        "must be of type string",
    ),
    "decreasing step weights": (
        steps(50, 25),
        "spec.rollout.steps",
        "rollout.steps weights must be strictly increasing",
    ),
    "repeated step weight": (steps(25, 25, 50), "spec.rollout.steps", "strictly increasing"),
    "no steps": (steps(), "spec.rollout.steps", "should have at least 1 items"),
    "21 steps": (steps(*range(1, 22)), "spec.rollout.steps", "Too many: 21: must have at most 20 items"),
    "step weight 0": (steps(0, 50), "spec.rollout.steps[0].weight", "should be greater than or equal to 1"),
    "step weight 101": (steps(50, 101), "spec.rollout.steps[1].weight", "should be less than or equal to 100"),
    "step without a weight": (
        {"model": MODEL, "rollout": {"steps": [{"pause": "1m"}]}},
        "spec.rollout.steps[0].weight",
        "Required value",
    ),
    "pause without a unit": (
        {"model": MODEL, "rollout": {"steps": [{"weight": 5, "pause": "90"}]}},
        "spec.rollout.steps[0].pause",
        "should match",
    ),
    "pause in words": (
        {"model": MODEL, "rollout": {"steps": [{"weight": 5, "pause": "2 minutes"}]}},
        "spec.rollout.steps[0].pause",
        "should match",
    ),
    "progressDeadline in days": (
        {"model": MODEL, "rollout": {"progressDeadline": "1d"}},
        "spec.rollout.progressDeadline",
        "should match",
    ),
    "batchShareMin above batchShareMax": (
        {"model": MODEL, "qos": {"batchShareMin": 0.6, "batchShareMax": 0.4}},
        "spec.qos.batchShareMin",
        "qos.batchShareMin must not exceed qos.batchShareMax",
    ),
    "batchShareMin 1, as an integer, above the default batchShareMax": (
        {"model": MODEL, "qos": {"batchShareMin": 1}},
        "spec.qos.batchShareMin",
        "must not exceed",
    ),
    "duplicate tenant names": (
        {"model": MODEL, "tenants": [{"name": "acme"}, {"name": "acme", "maxConcurrent": 2}]},
        "spec.tenants[1]",
        'Duplicate value: {"name":"acme"}',
    ),
    "tenant without a name": (
        {"model": MODEL, "tenants": [{"maxConcurrent": 2}]},
        "spec.tenants[0].name",
        "Required value",
    ),
    "speculative promptLookupMin above promptLookupMax": (
        {"model": MODEL, "speculative": {"method": "ngram", "promptLookupMin": 3, "promptLookupMax": 2}},
        "spec.speculative.promptLookupMin",
        "Invalid value: speculative.promptLookupMin must not exceed speculative.promptLookupMax",
    ),
    "speculative promptLookupMin 4, above the default promptLookupMax": (
        {"model": MODEL, "speculative": {"method": "ngram", "promptLookupMin": 4}},
        "spec.speculative.promptLookupMin",
        "must not exceed",
    ),
    "speculative method draft (unknown)": (
        {"model": MODEL, "speculative": {"method": "draft"}},
        "spec.speculative.method",
        'Unsupported value: "draft": supported values: "none", "ngram", "draft_model"',
    ),
    "speculative draft_model without its draftModel": (
        {"model": MODEL, "speculative": {"method": "draft_model"}},
        "spec.speculative.draftModel",
        "Required value: speculative.draftModel is required",
    ),
    "speculative draftModel with ngram": (
        {"model": MODEL, "speculative": {"method": "ngram", "draftModel": "/models/small"}},
        "spec.speculative.draftModel",
        "Forbidden: speculative.draftModel applies only",
    ),
    "17 speculative tokens": (
        {"model": MODEL, "speculative": {"numSpeculativeTokens": 17}},
        "spec.speculative.numSpeculativeTokens",
        "should be less than or equal to 16",
    ),
    "speculative disableBatchSize 0": (
        {"model": MODEL, "speculative": {"disableBatchSize": 0}},
        "spec.speculative.disableBatchSize",
        "should be greater than or equal to 1",
    ),
    "speculative minAcceptance above 1": (
        {"model": MODEL, "speculative": {"minAcceptance": 1.5}},
        "spec.speculative.minAcceptance",
        "should be less than or equal to 1",
    ),
    "speculation for an unknown QoS class": (
        {"model": MODEL, "speculative": {"qosClasses": ["bulk"]}},
        "spec.speculative.qosClasses[0]",
        'Unsupported value: "bulk"',
    ),
    "a QoS class listed twice for speculation": (
        {"model": MODEL, "speculative": {"qosClasses": ["batch", "batch"]}},
        "spec.speculative.qosClasses[1]",
        'Duplicate value: "batch"',
    ),
    "a pool taking no QoS class": (
        {"model": MODEL, "qos": {"classes": []}},
        "spec.qos.classes",
        "should have at least 1 items",
    ),
    "a pool taking an unknown QoS class": (
        {"model": MODEL, "qos": {"classes": ["bulk"]}},
        "spec.qos.classes[0]",
        'Unsupported value: "bulk"',
    ),
    "a QoS class a pool takes listed twice": (
        {"model": MODEL, "qos": {"classes": ["batch", "batch"]}},
        "spec.qos.classes[1]",
        'Duplicate value: "batch"',
    ),
    "a draft model with no method": (
        {"model": MODEL, "speculative": {"draftModel": "/models/draft"}},
        "spec.speculative.draftModel",
        "Forbidden: speculative.draftModel applies only",
    ),
    "coldStart holding no request": (
        {"model": MODEL, "coldStart": {"maxQueued": 0}},
        "spec.coldStart.maxQueued",
        "should be greater than or equal to 1",
    ),
    "autoscaling without maxReplicas": (
        {"model": MODEL, "autoscaling": {"minReplicas": 1}},
        "spec.autoscaling.maxReplicas",
        "Required value",
    ),
    "autoscaling minReplicas above maxReplicas": (
        {"model": MODEL, "autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
        "spec.autoscaling.minReplicas",
        "Invalid value: autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
    ),
    "autoscaling maxReplicas 0": (
        {"model": MODEL, "autoscaling": {"minReplicas": 0, "maxReplicas": 0}},
        "spec.autoscaling.maxReplicas",
        "should be greater than or equal to 1",
    ),
    "autoscaling negative minReplicas": (
        {"model": MODEL, "autoscaling": {"minReplicas": -1, "maxReplicas": 2}},
        "spec.autoscaling.minReplicas",
        "should be greater than or equal to 0",
    ),
    "autoscaling on an unknown signal": (
        {"model": MODEL, "autoscaling": {"maxReplicas": 2, "metrics": [{"type": "gpuUtilization", "target": 0.5}]}},
        "spec.autoscaling.metrics[0].type",
        'Unsupported value: "gpuUtilization": supported values: "waitingPerReplica", "kvCacheUsage", "ttftP95"',
    ),
    "autoscaling target negative": (
        {"model": MODEL, "autoscaling": {"maxReplicas": 2, "metrics": [{"type": "ttftP95", "target": -1}]}},
        "spec.autoscaling.metrics[0].target",
        "should be greater than 0",
    ),
    "autoscaling target 0": (
        {"model": MODEL, "autoscaling": {"maxReplicas": 2, "metrics": [{"type": "waitingPerReplica", "target": 0}]}},
        "spec.autoscaling.metrics[0].target",
        "should be greater than 0",
    ),
    "autoscaling kvCacheUsage target as a percentage": (
        {"model": MODEL, "autoscaling": {"maxReplicas": 2, "metrics": [{"type": "kvCacheUsage", "target": 80}]}},
        "spec.autoscaling.metrics[0].target",
        "Invalid value: a kvCacheUsage target is a fraction of the KV cache: at most 1",
    ),
    "autoscaling on one signal twice": (
        {
            "model": MODEL,
            "autoscaling": {
                "maxReplicas": 2,
                "metrics": [{"type": "ttftP95", "target": 1}, {"type": "ttftP95", "target": 2}],
            },
        },
        "spec.autoscaling.metrics[1]",
        'Duplicate value: {"type":"ttftP95"}',
    ),
    "autoscaling with no metrics": (
        {"model": MODEL, "autoscaling": {"maxReplicas": 2, "metrics": []}},
        "spec.autoscaling.metrics",
        "should have at least 1 items",
    ),
    "autoscaling metric without a target": (
        {"model": MODEL, "autoscaling": {"maxReplicas": 2, "metrics": [{"type": "ttftP95"}]}},
        "spec.autoscaling.metrics[0].target",
        "Required value",
    ),
    "autoscaling step of 0 replicas": (
        {"model": MODEL, "autoscaling": {"maxReplicas": 2, "behavior": {"scaleDown": {"maxStepReplicas": 0}}}},
        "spec.autoscaling.behavior.scaleDown.maxStepReplicas",
        "should be greater than or equal to 1",
    ),
    "autoscaling with a negative stabilization window": (
        {
            "model": MODEL,
            "autoscaling": {"maxReplicas": 2, "behavior": {"scaleUp": {"stabilizationWindowSeconds": -5}}},
        },
        "spec.autoscaling.behavior.scaleUp.stabilizationWindowSeconds",
        "should be greater than or equal to 0",
    ),
    "autoscaling idle period 0": (
        {"model": MODEL, "autoscaling": {"maxReplicas": 2, "scaleToZeroAfterSeconds": 0}},
        "spec.autoscaling.scaleToZeroAfterSeconds",
        "should be greater than or equal to 1",
    ),
    "autoscaling tolerance above 1": (
        {"model": MODEL, "autoscaling": {"maxReplicas": 2, "tolerance": 1.5}},
        "spec.autoscaling.tolerance",
        "should be less than or equal to 1",
    ),
    "autoscaling with an HPA's targetCPUUtilizationPercentage": (
        {"model": MODEL, "autoscaling": {"maxReplicas": 2, "targetCPUUtilizationPercentage": 80}},
        "spec.autoscaling.targetCPUUtilizationPercentage",
        "unknown field",
    ),
    "unknown field in spec": (
        {"model": MODEL, "gpus": 1},
        "spec.gpus",
        'strict decoding error: unknown field "spec.gpus"',
    ),
    "unknown field in runtime": (
        {"model": MODEL, "runtime": {"maxBatchSize": 8}},
        "spec.runtime.maxBatchSize",
        "unknown field",
    ),
    "unknown field in a step": (
        {"model": MODEL, "rollout": {"steps": [{"weight": 5, "duration": "1m"}]}},
        "spec.rollout.steps[0].duration",
        "unknown field",
    ),
}


@pytest.mark.parametrize("spec, field, says", INVALID.values(), ids=INVALID.keys())
def test_invalid_pool_is_rejected_naming_the_field(server_dry_run, spec, field, says):
    refusal = server_dry_run.refusal(pool(spec))
    assert fields_named(refusal) == {field}, refusal
    assert says in refusal
