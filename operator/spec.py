"""A ModelPool's spec as typed, validated values.

The API server already applied the CRD's defaults and rejected what its schema catches; this
parser checks again (an object may predate the schema, or come from a server that does not
enforce it) and fills the same defaults, so the rest of the operator works on plain values.
A problem becomes a SpecError naming the field: the pool is marked Degraded, not crash-looped.

Every default is its dataclass field's; those the runtime has too (batch sizes, block size, GPU
memory) are the runtime's own (shoal.runtime.config), so a pool that sets nothing runs the runtime
as its flags' defaults would. tests/operator/test_spec.py holds the CRD's `default:`s to them.
"""

import re
from dataclasses import dataclass, field

from shoal.fields import FieldError, Fields
from shoal.route_contract import QOS_CLASSES, ColdStart, read_qos_classes
from shoal.runtime.config import GPU_MAX_NUM_BATCHED_TOKENS, EngineConfig
from shoal.runtime.engine.lifecycle import INITIAL_WEIGHTS_VERSION
from shoal.runtime.speculative.config import SpeculativeConfig

MODEL_SOURCES = ("embedded", "path", "random")
DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("cuda", "cpu")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
BLOCK_SIZES = (8, 16, 32, 64)
# The runtime's methods a pool may name; `draft` (with a draftModel) comes once the runtime has it.
SPECULATIVE_METHODS = ("none", "ngram", "draft_model")
MAX_SPECULATIVE_TOKENS = 16
# Every rank of a runtime is a process of its one pod, so all its GPUs are one node's: 8 on the
# largest common nodes (the CRD's bound on parallelism.tensor x parallelism.pipeline too).
MAX_WORLD_SIZE = 8
# The autoscaler's signals, as the router measures them for a pool: requests waiting (in the runtimes'
# queues and held by the router) per ready replica; the KV cache's used fraction; p95 TTFT, seconds.
WAITING_PER_REPLICA, KV_CACHE_USAGE, TTFT_P95 = "waitingPerReplica", "kvCacheUsage", "ttftP95"
AUTOSCALING_SIGNALS = (WAITING_PER_REPLICA, KV_CACHE_USAGE, TTFT_P95)
MAX_REPLICAS = 1000  # the CRD's bound on spec.replicas and on autoscaling.maxReplicas
DEFAULT_PAUSE = "1m"  # a step written without a pause holds this long (the CRD's default too)
REVISION_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")
WEIGHTS_VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]{0,62}$")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class SpecError(FieldError):
    """The spec cannot be served as written; the message starts with the field's path."""


@dataclass(frozen=True)
class WeightsSpec:
    """Weights to serve in place of the source's (a version label, a safetensors directory in the
    runtime container): rolled onto the running replicas one at a time, no new revision."""

    version: str
    path: str


@dataclass(frozen=True)
class ModelSpec:
    revision: str
    source: str = "embedded"
    path: str | None = None
    config: str | None = None
    volume_claim: str | None = None
    dtype: str = "auto"
    served_name: str | None = None
    weights: WeightsSpec | None = None  # not part of the revision (revisions.py)


@dataclass(frozen=True)
class CompileCache:
    """A folder for the runtime's compiled kernels (--compile-cache-dir): an emptyDir (kept across
    container restarts), or a PersistentVolumeClaim (kept across pods)."""

    volume_claim: str | None = None


@dataclass(frozen=True)
class RuntimeSpec:
    image: str = "ghcr.io/shoal-dev/shoal-runtime:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    device: str = "cuda"
    max_num_seqs: int = EngineConfig.max_num_seqs
    # The runtime's GPU default, always passed: a pool's pods run on GPUs unless it says cpu (and
    # the revision names of existing pools hash this value).
    max_num_batched_tokens: int = GPU_MAX_NUM_BATCHED_TOKENS
    max_model_len: int | None = None
    # Of the GPU's memory, what the runtime may take for weights, activations and the KV cache
    # together (vLLM's --gpu-memory-utilization); the KV cache gets what the other two leave.
    gpu_memory_utilization: float = EngineConfig.gpu_memory_utilization
    kv_cache_memory: str | None = None
    block_size: int = EngineConfig.block_size
    max_waiting: int | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    compile_cache: CompileCache | None = None


@dataclass(frozen=True)
class ResourcesSpec:
    gpus: int = 1
    cpu: str | None = None
    memory: str | None = None


@dataclass(frozen=True)
class ParallelismSpec:
    """How many GPUs of its pod one runtime splits the model over: each layer over `tensor`, the
    layers over `pipeline` (vLLM's --tensor-parallel-size, --pipeline-parallel-size)."""

    tensor: int = 1
    pipeline: int = 1

    @property
    def world_size(self) -> int:
        """The runtime's processes, one per GPU."""
        return self.tensor * self.pipeline


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
    max_oom_errors: int = 0
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
    classes: tuple[str, ...] = QOS_CLASSES  # of the model's requests, those this pool takes (the route's qos_classes)
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
class SpeculativeSpec:
    """Speculative decoding: how the runtime drafts (its --speculative-config, the runtime's own
    dataclass and defaults), and which QoS classes' requests may (the router's side, in the route)."""

    config: SpeculativeConfig = SpeculativeConfig()
    qos_classes: tuple[str, ...] = QOS_CLASSES


@dataclass(frozen=True)
class MetricTarget:
    """One signal and the value per replica the autoscaler holds it to."""

    signal: str  # one of AUTOSCALING_SIGNALS
    target: float  # waiting requests per replica, a fraction of the KV cache (0-1], or seconds


@dataclass(frozen=True)
class ScalingRules:
    """How fast the autoscaler may move one way (the HPA's behavior.scaleUp / scaleDown): a
    recommendation holds only once it has lasted the stabilization window, and within any period
    at most max_step_replicas or max_step_percent more (or fewer), whichever allows more; None: that
    limit is not set."""

    stabilization_window_s: float
    max_step_replicas: int | None
    max_step_percent: int | None
    period_s: float = 15.0


@dataclass(frozen=True)
class AutoscalingSpec:
    """The autoscaler owns spec.replicas (it writes it through the scale subresource, as an HPA
    would); these bound and pace it. Defaults are the HPA's where it has one."""

    max_replicas: int
    min_replicas: int = 1  # 0: the pool may scale to zero once idle for scale_to_zero_after_s
    metrics: tuple[MetricTarget, ...] = (MetricTarget(KV_CACHE_USAGE, 0.8), MetricTarget(WAITING_PER_REPLICA, 2.0))
    scale_up: ScalingRules = ScalingRules(0.0, 4, 100)
    scale_down: ScalingRules = ScalingRules(300.0, None, 100)
    tolerance: float = 0.1  # a signal within this fraction of its target moves nothing
    scale_to_zero_after_s: float = 300.0  # no request for this long: down to min_replicas at once
    rollback_cooldown_s: float = 300.0  # after a canary rollback, no scaling down for this long


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
    parallelism: ParallelismSpec = ParallelismSpec()
    placement: Placement = Placement()
    rollout: RolloutSpec = RolloutSpec()
    qos: QosSpec = QosSpec()
    tenants: tuple[TenantSpec, ...] = ()
    speculative: SpeculativeSpec = SpeculativeSpec()
    cold_start: ColdStart = ColdStart()  # the router's hold while no runtime is ready (the route's)
    autoscaling: AutoscalingSpec | None = None  # None: spec.replicas is the user's
    # Deprecated fields the spec still uses, each with what replaces it; shown in status.
    deprecated: tuple[str, ...] = ()


def parse_duration(text: str, path: str) -> float:
    """'90s', '2m', '1h30m', '250ms' -> seconds (the CRD's duration pattern)."""
    parts = _DURATION_PART.findall(text) if isinstance(text, str) else []
    if not parts or "".join(n + u for n, u in parts) != text:
        raise SpecError(f"{path}: {text!r} is not a duration like 30s, 2m or 1h30m")
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def parse_pool_spec(spec: dict) -> PoolSpec:
    f = Fields(spec, "spec", SpecError)
    model = _model(f.sub("model", required=True))
    replicas = f.get("replicas", int, PoolSpec.replicas, minimum=0)
    runtime, deprecated = _runtime(f.sub("runtime"))
    resources = _resources(f.sub("resources"), runtime.device)
    parallelism = _parallelism(f.sub("parallelism"))
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
    speculative = _speculative(f.sub("speculative"))
    if f.has("parallelism"):
        _check_parallelism(f, parallelism, resources, runtime.device, speculative)
    cold_start = _cold_start(f.sub("coldStart"))
    autoscaling = _autoscaling(f.sub("autoscaling")) if f.has("autoscaling") else None
    f.done()
    return PoolSpec(
        model=model,
        replicas=replicas,
        runtime=runtime,
        resources=resources,
        parallelism=parallelism,
        placement=placement,
        rollout=rollout,
        qos=qos,
        tenants=tenants,
        speculative=speculative,
        cold_start=cold_start,
        autoscaling=autoscaling,
        deprecated=deprecated,
    )


def _model(f: Fields) -> ModelSpec:
    d = ModelSpec
    revision = f.get("revision", str)
    if not REVISION_PATTERN.match(revision):
        raise SpecError(f"{f.name('revision')}: {revision!r} must be lower-case letters, digits and '-', at most 40")
    source = f.get("source", str, d.source, choices=MODEL_SOURCES)
    model = ModelSpec(
        revision=revision,
        source=source,
        path=f.get("path", str, d.path),
        config=f.get("config", str, d.config),
        volume_claim=f.get("volumeClaim", str, d.volume_claim),
        dtype=f.get("dtype", str, d.dtype, choices=DTYPES),
        served_name=f.get("servedName", str, d.served_name),
        weights=_weights(f.sub("weights")) if f.has("weights") else None,
    )
    f.done()
    if source == "path" and not model.path:
        raise SpecError(f"{f.name('path')}: required when source is 'path'")
    if source == "random" and not model.config:
        raise SpecError(f"{f.name('config')}: required when source is 'random' (a directory holding config.json)")
    if source == "embedded" and (model.path or model.config):
        raise SpecError(f"{f.path}: path and config do not apply to the embedded model")
    return model


def _weights(f: Fields) -> WeightsSpec:
    version = f.get("version", str)
    if not WEIGHTS_VERSION_PATTERN.match(version):
        raise SpecError(f"{f.name('version')}: {version!r} must be 1 to 63 letters, digits, '.', '_' or '-'")
    if version == INITIAL_WEIGHTS_VERSION:  # every new pod reports it: they would never be updated
        raise SpecError(f"{f.name('version')}: {version!r} names the source's weights; pick another label")
    weights = WeightsSpec(version, f.get("path", str))
    f.done()
    if not weights.path.startswith("/"):
        raise SpecError(f"{f.name('path')}: {weights.path!r} must be an absolute path in the runtime container")
    return weights


def _runtime(f: Fields) -> tuple[RuntimeSpec, tuple[str, ...]]:
    """The runtime spec, and the deprecated fields it was read from."""
    d = RuntimeSpec
    env = []
    for item in f.items("env"):
        env.append((item.get("name", str), item.get("value", str, "")))
        item.done()
    gpu_memory, deprecated = _gpu_memory_utilization(f)
    runtime = RuntimeSpec(
        image=f.get("image", str, d.image),
        image_pull_policy=f.get("imagePullPolicy", str, d.image_pull_policy, choices=PULL_POLICIES),
        device=f.get("device", str, d.device, choices=DEVICES),
        max_num_seqs=f.get("maxNumSeqs", int, d.max_num_seqs, minimum=1),
        max_num_batched_tokens=f.get("maxNumBatchedTokens", int, d.max_num_batched_tokens, minimum=16),
        max_model_len=f.get("maxModelLen", int, d.max_model_len, minimum=16),
        gpu_memory_utilization=gpu_memory,
        kv_cache_memory=f.get("kvCacheMemory", str, d.kv_cache_memory),
        block_size=f.get("blockSize", int, d.block_size, choices=BLOCK_SIZES),
        max_waiting=f.get("maxWaiting", int, d.max_waiting, minimum=1),
        args=tuple(f.strings("args")),
        env=tuple(env),
        compile_cache=_compile_cache(f.sub("compileCache")) if f.has("compileCache") else None,
    )
    f.done()
    return runtime, deprecated


def _compile_cache(f: Fields) -> CompileCache:
    cache = CompileCache(volume_claim=f.get("volumeClaim", str, CompileCache.volume_claim))
    f.done()
    return cache


def _gpu_memory_utilization(f: Fields) -> tuple[float, tuple[str, ...]]:
    """gpuMemoryUtilization, else v1alpha1's deprecated kvCacheFraction (the same value under a name
    that said less than it does), else the default. The CRD refuses both at once; so does this."""
    bounds = {"minimum": 0.05, "maximum": 0.99}
    value = f.get("gpuMemoryUtilization", float, None, **bounds)
    old = f.get("kvCacheFraction", float, None, **bounds)
    if old is None:
        return (RuntimeSpec.gpu_memory_utilization if value is None else value), ()
    if value is not None:
        raise SpecError(
            f"{f.name('kvCacheFraction')}: deprecated name of gpuMemoryUtilization; set only gpuMemoryUtilization"
        )
    return old, (f"{f.name('kvCacheFraction')} is deprecated: use {f.name('gpuMemoryUtilization')} (the same value)",)


def _resources(f: Fields, device: str) -> ResourcesSpec:
    gpus = f.get("gpus", int, 0 if device == "cpu" else ResourcesSpec.gpus, minimum=0)
    if device == "cpu" and gpus:
        raise SpecError(f"{f.name('gpus')}: must be 0 when runtime.device is cpu")
    if device == "cuda" and not gpus:
        raise SpecError(f"{f.name('gpus')}: runtime.device cuda needs at least 1")
    resources = ResourcesSpec(gpus, _quantity(f, "cpu"), _quantity(f, "memory"))
    f.done()
    return resources


def _parallelism(f: Fields) -> ParallelismSpec:
    d, bounds = ParallelismSpec, {"minimum": 1, "maximum": MAX_WORLD_SIZE}
    parallelism = ParallelismSpec(
        tensor=f.get("tensor", int, d.tensor, **bounds),
        pipeline=f.get("pipeline", int, d.pipeline, **bounds),
    )
    f.done()
    if parallelism.world_size > MAX_WORLD_SIZE:
        raise SpecError(
            f"{f.path}: tensor x pipeline ({parallelism.tensor} x {parallelism.pipeline}) must be at most "
            f"{MAX_WORLD_SIZE}: every rank is a process of one pod, so the GPUs of one node"
        )
    return parallelism


def _check_parallelism(
    f: Fields, parallelism: ParallelismSpec, resources: ResourcesSpec, device: str, speculative: SpeculativeSpec
) -> None:
    """The CRD's rules across fields, for a spec that gives parallelism (one that leaves it out keeps
    any resources.gpus, as before the field existed: its runtime uses one GPU)."""
    size = parallelism.world_size
    if device == "cuda" and resources.gpus != size:
        raise SpecError(
            f"{f.name('resources')}.gpus: must equal parallelism.tensor x parallelism.pipeline ({size}) "
            f"when runtime.device is cuda, got {resources.gpus}"
        )
    if device == "cuda" and parallelism.pipeline > 1:
        raise SpecError(
            f"{f.name('parallelism')}.pipeline: above 1 runs on CPU pools only so far (the runtime's pipeline "
            f"stages do not run on GPUs yet), got {parallelism.pipeline} with runtime.device cuda"
        )
    if speculative.config.method == "draft_model" and size > 1:
        raise SpecError(
            f"{f.name('speculative')}.method: draft_model needs parallelism.tensor x parallelism.pipeline "
            f"of 1 (the runtime's draft model runs on one GPU), got {size}"
        )


def _rollout(f: Fields) -> RolloutSpec:
    steps = []
    for item in f.items("steps"):
        steps.append(
            Step(
                item.get("weight", int, minimum=1, maximum=100),
                parse_duration(item.get("pause", str, DEFAULT_PAUSE), item.name("pause")),
            )
        )
        item.done()
    weights = [s.weight for s in steps]
    if any(b <= a for a, b in zip(weights, weights[1:], strict=False)):
        raise SpecError(f"{f.name('steps')}: weights must be strictly increasing, got {weights}")
    a, d = f.sub("analysis"), Analysis
    analysis = Analysis(
        max_p99_latency_ratio=a.get("maxP99LatencyRatio", float, d.max_p99_latency_ratio, minimum=1.0),
        min_p99_latency_increase_s=a.get(
            "minP99LatencyIncreaseSeconds", float, d.min_p99_latency_increase_s, minimum=0.0
        ),
        max_error_rate=a.get("maxErrorRate", float, d.max_error_rate, minimum=0.0, maximum=1.0),
        max_preemptions=a.get("maxPreemptions", int, d.max_preemptions, minimum=0),
        max_oom_errors=a.get("maxOomErrors", int, d.max_oom_errors, minimum=0),
        min_kv_free_fraction=a.get("minKvFreeFraction", float, d.min_kv_free_fraction, minimum=0.0, maximum=1.0),
        min_samples=a.get("minSamples", int, d.min_samples, minimum=1),
        window_s=a.get("windowSeconds", int, d.window_s, minimum=5),
    )
    a.done()
    deadline = f.get("progressDeadline", str, None)
    rollout = RolloutSpec(
        tuple(steps) or RolloutSpec.steps,
        analysis,
        RolloutSpec.progress_deadline_s if deadline is None else parse_duration(deadline, f.name("progressDeadline")),
    )
    f.done()
    return rollout


def _qos(f: Fields) -> QosSpec:
    d = QosSpec
    qos = QosSpec(
        classes=read_qos_classes(f, "classes", d.classes, at_least_one=True),
        max_concurrency_per_replica=f.get("maxConcurrencyPerReplica", int, d.max_concurrency_per_replica, minimum=1),
        realtime_ttft_target_s=f.get("realtimeTtftTargetSeconds", float, d.realtime_ttft_target_s, minimum=0.001),
        batch_share_min=f.get("batchShareMin", float, d.batch_share_min, minimum=0.0, maximum=1.0),
        batch_share_max=f.get("batchShareMax", float, d.batch_share_max, minimum=0.0, maximum=1.0),
    )
    f.done()
    if qos.batch_share_min > qos.batch_share_max:
        raise SpecError(f"{f.path}.batchShareMin: must not exceed batchShareMax")
    return qos


def _speculative(f: Fields) -> SpeculativeSpec:
    d = SpeculativeConfig
    config = {
        "method": f.get("method", str, d.method, choices=SPECULATIVE_METHODS),
        "num_speculative_tokens": f.get(
            "numSpeculativeTokens", int, d.num_speculative_tokens, minimum=1, maximum=MAX_SPECULATIVE_TOKENS
        ),
        "prompt_lookup_min": f.get("promptLookupMin", int, d.prompt_lookup_min, minimum=1),
        "prompt_lookup_max": f.get("promptLookupMax", int, d.prompt_lookup_max, minimum=1),
        "disable_batch_size": f.get("disableBatchSize", int, d.disable_batch_size, minimum=1),
        "min_acceptance": f.get("minAcceptance", float, d.min_acceptance, minimum=0.0, maximum=1.0),
        "model": f.get("draftModel", str, d.model),
    }
    if config["prompt_lookup_min"] > config["prompt_lookup_max"]:
        raise SpecError(f"{f.name('promptLookupMin')}: must not exceed promptLookupMax ({config['prompt_lookup_max']})")
    if (config["method"] == "draft_model") != (config["model"] is not None):
        raise SpecError(f"{f.name('draftModel')}: given with method draft_model, and only with it")
    qos_classes = read_qos_classes(f, "qosClasses", SpeculativeSpec.qos_classes, at_least_one=False)
    f.done()
    return SpeculativeSpec(SpeculativeConfig(**config), qos_classes)


def _cold_start(f: Fields) -> ColdStart:
    d = ColdStart
    cold_start = ColdStart(
        enabled=f.get("enabled", bool, d.enabled),
        max_queued=f.get("maxQueued", int, d.max_queued, minimum=1),
        max_wait_s=f.get("maxWaitSeconds", float, d.max_wait_s, minimum=0.0),
    )
    f.done()
    return cold_start


def _autoscaling(f: Fields) -> AutoscalingSpec:
    d = AutoscalingSpec
    max_replicas = f.get("maxReplicas", int, minimum=1, maximum=MAX_REPLICAS)
    min_replicas = f.get("minReplicas", int, d.min_replicas, minimum=0, maximum=MAX_REPLICAS)
    if min_replicas > max_replicas:
        raise SpecError(f"{f.name('minReplicas')}: must not exceed maxReplicas ({max_replicas})")
    metrics = tuple(_metric_target(item) for item in f.items("metrics")) if f.has("metrics") else d.metrics
    signals = [m.signal for m in metrics]
    if not metrics or len(set(signals)) != len(signals):
        raise SpecError(f"{f.name('metrics')}: must name each signal at most once, and at least one; got {signals}")
    behavior = f.sub("behavior")
    autoscaling = AutoscalingSpec(
        max_replicas=max_replicas,
        min_replicas=min_replicas,
        metrics=metrics,
        scale_up=_scaling_rules(behavior.sub("scaleUp"), d.scale_up),
        scale_down=_scaling_rules(behavior.sub("scaleDown"), d.scale_down),
        tolerance=f.get("tolerance", float, d.tolerance, minimum=0.0, maximum=1.0),
        scale_to_zero_after_s=float(
            f.get("scaleToZeroAfterSeconds", int, d.scale_to_zero_after_s, minimum=1, maximum=604800)
        ),
        rollback_cooldown_s=float(
            f.get("rollbackCooldownSeconds", int, d.rollback_cooldown_s, minimum=0, maximum=86400)
        ),
    )
    behavior.done()
    f.done()
    return autoscaling


def _metric_target(f: Fields) -> MetricTarget:
    signal = f.get("type", str, choices=AUTOSCALING_SIGNALS)
    target = f.get("target", float, maximum=1.0 if signal == KV_CACHE_USAGE else None)
    if target <= 0:
        raise SpecError(f"{f.name('target')}: must be > 0, got {target}")
    f.done()
    return MetricTarget(signal, target)


def _scaling_rules(f: Fields, default: ScalingRules) -> ScalingRules:
    """Step limits given replace both defaults, as an HPA's policies replace its default policies:
    a lone maxStepReplicas: 1 is then the only limit, not outdone by the default percent."""
    replicas = f.get("maxStepReplicas", int, None, minimum=1, maximum=MAX_REPLICAS)
    percent = f.get("maxStepPercent", int, None, minimum=1, maximum=1000)
    rules = ScalingRules(
        stabilization_window_s=float(
            f.get("stabilizationWindowSeconds", int, default.stabilization_window_s, minimum=0, maximum=3600)
        ),
        max_step_replicas=replicas if replicas or percent else default.max_step_replicas,
        max_step_percent=percent if replicas or percent else default.max_step_percent,
        period_s=float(f.get("periodSeconds", int, default.period_s, minimum=1, maximum=1800)),
    )
    f.done()
    return rules


def _tenant(f: Fields) -> TenantSpec:
    tenant = TenantSpec(
        name=f.get("name", str),
        max_concurrent=f.get("maxConcurrent", int, TenantSpec.max_concurrent, minimum=1),
        tokens_per_minute=f.get("tokensPerMinute", int, TenantSpec.tokens_per_minute, minimum=1),
    )
    f.done()
    return tenant


def _quantity(f: Fields, key: str) -> str | None:
    value = f.get(key, (str, int, float), None)
    return None if value is None else str(value)
