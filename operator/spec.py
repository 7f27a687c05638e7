"""A ModelPool's spec as typed, validated values.

The API server already applied the CRD's defaults and rejected what its schema catches; this
parser checks again (an object may predate the schema, or come from a server that does not
enforce it) and fills the same defaults, so the rest of the operator works on plain values.
A problem becomes a SpecError naming the field: the pool is marked Degraded, not crash-looped.
"""

import math
import re
from dataclasses import dataclass, field

MODEL_SOURCES = ("embedded", "path", "random")
DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("cuda", "cpu")
REVISION_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class SpecError(ValueError):
    """The spec cannot be served as written; the message starts with the field's path."""


@dataclass(frozen=True)
class ModelSpec:
    revision: str
    source: str = "embedded"
    path: str | None = None
    config: str | None = None
    volume_claim: str | None = None
    dtype: str = "auto"
    served_name: str | None = None


@dataclass(frozen=True)
class RuntimeSpec:
    image: str = "ghcr.io/shoal-dev/shoal-runtime:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    device: str = "cuda"
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    max_model_len: int | None = None
    kv_cache_fraction: float = 0.9
    kv_cache_memory: str | None = None
    block_size: int = 16
    max_waiting: int | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ResourcesSpec:
    gpus: int = 1
    cpu: str | None = None
    memory: str | None = None


@dataclass(frozen=True)
class Step:
    weight: int
    pause_s: float


@dataclass(frozen=True)
class Analysis:
    max_p99_latency_ratio: float = 1.3
    min_p99_latency_increase_s: float = 0.05
    max_error_rate: float = 0.01
    max_preemptions: int = 0
    min_kv_free_fraction: float = 0.1
    min_samples: int = 200
    window_s: int = 60


@dataclass(frozen=True)
class RolloutSpec:
    steps: tuple[Step, ...] = (Step(5, 120.0), Step(25, 300.0), Step(50, 300.0))
    analysis: Analysis = Analysis()
    progress_deadline_s: float = 600.0


@dataclass(frozen=True)
class QosSpec:
    max_concurrency_per_replica: int = 16
    realtime_ttft_target_s: float = 1.0
    batch_share_min: float = 0.1
    batch_share_max: float = 0.5


@dataclass(frozen=True)
class TenantSpec:
    name: str
    max_concurrent: int | None = None
    tokens_per_minute: int | None = None


@dataclass(frozen=True)
class Placement:
    """Where pods may run; passed to the pod template as written."""

    node_selector: dict = field(default_factory=dict)
    tolerations: tuple = ()
    affinity: dict | None = None


@dataclass(frozen=True)
class PoolSpec:
    model: ModelSpec
    replicas: int = 1
    runtime: RuntimeSpec = RuntimeSpec()
    resources: ResourcesSpec = ResourcesSpec()
    placement: Placement = Placement()
    rollout: RolloutSpec = RolloutSpec()
    qos: QosSpec = QosSpec()
    tenants: tuple[TenantSpec, ...] = ()


def parse_duration(text: str, path: str) -> float:
    """'90s', '2m', '1h30m', '250ms' -> seconds (the CRD's duration pattern)."""
    parts = _DURATION_PART.findall(text) if isinstance(text, str) else []
    if not parts or "".join(n + u for n, u in parts) != text:
        raise SpecError(f"{path}: {text!r} is not a duration like 30s, 2m or 1h30m")
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def parse_pool_spec(spec: dict) -> PoolSpec:
    f = _Fields(spec, "spec")
    model = _model(f.sub("model", required=True))
    replicas = f.get("replicas", int, 1, minimum=0)
    runtime = _runtime(f.sub("runtime"))
    resources = _resources(f.sub("resources"), runtime.device)
    placement = Placement(
        node_selector=dict(f.get("nodeSelector", dict, {})),
        tolerations=tuple(f.get("tolerations", list, [])),
        affinity=f.get("affinity", dict, None),
    )
    rollout = _rollout(f.sub("rollout"))
    qos = _qos(f.sub("qos"))
    tenants = tuple(_tenant(t) for t in f.items("tenants"))
    names = [t.name for t in tenants]
    if len(set(names)) != len(names):
        raise SpecError(f"spec.tenants: duplicate names in {names}")
    f.done()
    return PoolSpec(model, replicas, runtime, resources, placement, rollout, qos, tenants)


def _model(f: "_Fields") -> ModelSpec:
    revision = f.get("revision", str)
    if not REVISION_PATTERN.match(revision):
        raise SpecError(f"{f.name('revision')}: {revision!r} must be lower-case letters, digits and '-', at most 40")
    source = f.get("source", str, "embedded", choices=MODEL_SOURCES)
    model = ModelSpec(
        revision=revision,
        source=source,
        path=f.get("path", str, None),
        config=f.get("config", str, None),
        volume_claim=f.get("volumeClaim", str, None),
        dtype=f.get("dtype", str, "auto", choices=DTYPES),
        served_name=f.get("servedName", str, None),
    )
    f.done()
    if source == "path" and not model.path:
        raise SpecError(f"{f.name('path')}: required when source is 'path'")
    if source == "random" and not model.config:
        raise SpecError(f"{f.name('config')}: required when source is 'random' (a directory holding config.json)")
    if source == "embedded" and (model.path or model.config):
        raise SpecError(f"{f.path}: path and config do not apply to the embedded model")
    return model


def _runtime(f: "_Fields") -> RuntimeSpec:
    env = []
    for item in f.items("env"):
        env.append((item.get("name", str), item.get("value", str, "")))
        item.done()
    runtime = RuntimeSpec(
        image=f.get("image", str, RuntimeSpec.image),
        image_pull_policy=f.get("imagePullPolicy", str, "IfNotPresent", choices=("Always", "IfNotPresent", "Never")),
        device=f.get("device", str, "cuda", choices=DEVICES),
        max_num_seqs=f.get("maxNumSeqs", int, 256, minimum=1),
        max_num_batched_tokens=f.get("maxNumBatchedTokens", int, 8192, minimum=16),
        max_model_len=f.get("maxModelLen", int, None, minimum=16),
        kv_cache_fraction=f.get("kvCacheFraction", float, 0.9, minimum=0.05, maximum=0.99),
        kv_cache_memory=f.get("kvCacheMemory", str, None),
        block_size=f.get("blockSize", int, 16, choices=(8, 16, 32, 64)),
        max_waiting=f.get("maxWaiting", int, None, minimum=1),
        args=tuple(_strings(f, "args")),
        env=tuple(env),
    )
    f.done()
    return runtime


def _resources(f: "_Fields", device: str) -> ResourcesSpec:
    gpus = f.get("gpus", int, 0 if device == "cpu" else 1, minimum=0)
    if device == "cpu" and gpus:
        raise SpecError(f"{f.name('gpus')}: must be 0 when runtime.device is cpu")
    if device == "cuda" and not gpus:
        raise SpecError(f"{f.name('gpus')}: runtime.device cuda needs at least 1")
    resources = ResourcesSpec(gpus, _quantity(f, "cpu"), _quantity(f, "memory"))
    f.done()
    return resources


def _rollout(f: "_Fields") -> RolloutSpec:
    steps = []
    for item in f.items("steps"):
        steps.append(Step(item.get("weight", int, minimum=1, maximum=100), parse_duration(item.get("pause", str, "1m"), item.name("pause"))))  # fmt: skip
        item.done()
    weights = [s.weight for s in steps]
    if any(b <= a for a, b in zip(weights, weights[1:])):
        raise SpecError(f"{f.name('steps')}: weights must be strictly increasing, got {weights}")
    a = f.sub("analysis")
    analysis = Analysis(
        max_p99_latency_ratio=a.get("maxP99LatencyRatio", float, 1.3, minimum=1.0),
        min_p99_latency_increase_s=a.get("minP99LatencyIncreaseSeconds", float, 0.05, minimum=0.0),
        max_error_rate=a.get("maxErrorRate", float, 0.01, minimum=0.0, maximum=1.0),
        max_preemptions=a.get("maxPreemptions", int, 0, minimum=0),
        min_kv_free_fraction=a.get("minKvFreeFraction", float, 0.1, minimum=0.0, maximum=1.0),
        min_samples=a.get("minSamples", int, 200, minimum=1),
        window_s=a.get("windowSeconds", int, 60, minimum=5),
    )
    a.done()
    deadline = parse_duration(f.get("progressDeadline", str, "10m"), f.name("progressDeadline"))
    rollout = RolloutSpec(tuple(steps) or RolloutSpec.steps, analysis, deadline)
    f.done()
    return rollout


def _qos(f: "_Fields") -> QosSpec:
    qos = QosSpec(
        max_concurrency_per_replica=f.get("maxConcurrencyPerReplica", int, 16, minimum=1),
        realtime_ttft_target_s=f.get("realtimeTtftTargetSeconds", float, 1.0, minimum=0.001),
        batch_share_min=f.get("batchShareMin", float, 0.1, minimum=0.0, maximum=1.0),
        batch_share_max=f.get("batchShareMax", float, 0.5, minimum=0.0, maximum=1.0),
    )
    f.done()
    if qos.batch_share_min > qos.batch_share_max:
        raise SpecError(f"{f.path}.batchShareMin: must not exceed batchShareMax")
    return qos


def _tenant(f: "_Fields") -> TenantSpec:
    tenant = TenantSpec(
        name=f.get("name", str),
        max_concurrent=f.get("maxConcurrent", int, None, minimum=1),
        tokens_per_minute=f.get("tokensPerMinute", int, None, minimum=1),
    )
    f.done()
    return tenant


def _strings(f: "_Fields", key: str) -> list[str]:
    values = f.get(key, list, [])
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise SpecError(f"{f.name(key)}[{i}]: must be a string")
    return values


def _quantity(f: "_Fields", key: str) -> str | None:
    value = f.get(key, (str, int, float), None)
    return None if value is None else str(value)


class _Fields:
    """Reads one object of the spec; remembers which keys were read so unknown ones are reported."""

    def __init__(self, data, path: str):
        if not isinstance(data, dict):
            raise SpecError(f"{path}: must be an object")
        self.data, self.path, self._seen = data, path, set()

    def name(self, key: str) -> str:
        return f"{self.path}.{key}"

    def get(self, key: str, kind, default=..., *, minimum=None, maximum=None, choices=None):
        self._seen.add(key)
        value = self.data.get(key)
        if value is None:
            if default is ...:
                raise SpecError(f"{self.name(key)}: required")
            return default
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, kind):
            expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise SpecError(f"{self.name(key)}: must be {expected}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(f"{self.name(key)}: must be a finite number")
        if choices is not None and value not in choices:
            raise SpecError(f"{self.name(key)}: {value!r} is not one of {list(choices)}")
        if minimum is not None and value < minimum:
            raise SpecError(f"{self.name(key)}: must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise SpecError(f"{self.name(key)}: must be <= {maximum}, got {value}")
        return value

    def sub(self, key: str, required: bool = False) -> "_Fields":
        return _Fields(self.get(key, dict, ... if required else {}), self.name(key))

    def items(self, key: str) -> list["_Fields"]:
        return [_Fields(item, f"{self.name(key)}[{i}]") for i, item in enumerate(self.get(key, list, []))]

    def done(self) -> None:
        unknown = sorted(set(self.data) - self._seen)
        if unknown:
            raise SpecError(f"{self.path}: unknown field(s) {unknown}")
