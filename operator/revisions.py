"""What a revision is: the part of a ModelPool's spec its pods are made from, and its name.

A change to the model, the runtime, the resources, the parallelism, the placement or how the
runtime speculates makes a new revision (and so a canary rollout, whose analysis judges the new
speed); replicas, rollout, QoS, tenants, model.weights and speculative.qosClasses (the router's) do
not (new weights are rolled onto the running replicas in place: weights_rollout.py). The name joins
the user's model.revision with a short hash of that part, as a Deployment's pod-template-hash does,
so a runtime-only change under the same model.revision is still a distinct revision.
"""

import hashlib
import json
from dataclasses import asdict

from shoal.operator.spec import PoolSpec, parse_pool_spec

TEMPLATE_FIELDS = (
    "model",
    "runtime",
    "resources",
    "parallelism",
    "nodeSelector",
    "tolerations",
    "affinity",
    "speculative",
)


def template_of(spec: dict) -> dict:
    """The spec's revision-defining fields, as written (kept in status for the stable revision)."""
    template = {key: spec[key] for key in TEMPLATE_FIELDS if key in spec}
    if "weights" in (template.get("model") or {}):
        template["model"] = {key: value for key, value in template["model"].items() if key != "weights"}
    return template


def pool_spec_of_template(template: dict) -> PoolSpec:
    return parse_pool_spec(template)


def revision_name(spec: PoolSpec) -> str:
    runtime = asdict(spec.runtime)
    # Hashed under the field's first name, so that renaming it (kvCacheFraction, now
    # gpuMemoryUtilization) renamed no revision: a new name would have rolled out every pool again.
    runtime["kv_cache_fraction"] = runtime.pop("gpu_memory_utilization")
    # Fields added since are hashed only when set, so that adding them renamed no revision either.
    if runtime["compile_cache"] is None:
        del runtime["compile_cache"]
    model = asdict(spec.model)
    del model["weights"]  # rolled in place, never a new revision
    parts = {
        "model": model,
        "runtime": runtime,
        "resources": asdict(spec.resources),
        "placement": asdict(spec.placement),
    }
    if spec.speculative.config.enabled:  # off, it changes no pod (no flag), so no revision
        parts["speculative"] = asdict(spec.speculative.config)
    if spec.parallelism.world_size > 1:  # at 1, no flag and no /dev/shm: the pods of a pool without it
        parts["parallelism"] = asdict(spec.parallelism)
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return f"{spec.model.revision}-{digest}"
