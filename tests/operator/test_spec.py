"""The operator's spec parser agrees with the CRD: what the API server stores (a dry run on the
real one), it reads."""

from pathlib import Path

import pytest
import yaml

from shoal.operator.revisions import revision_name
from shoal.operator.spec import (
    SPECULATIVE_METHODS,
    AutoscalingSpec,
    CompileCache,
    SpecError,
    SpeculativeSpec,
    WeightsSpec,
    parse_duration,
    parse_pool_spec,
)
from shoal.route_contract import QOS_CLASSES
from shoal.runtime.speculative.config import METHODS, SpeculativeConfig

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "crds" / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_as_stored_by_the_api_server_parses(server_dry_run, path):
    for stored in server_dry_run.apply(*yaml.safe_load_all(path.read_text())):
        spec = parse_pool_spec(stored["spec"])
        assert revision_name(spec).startswith(spec.model.revision + "-")


def test_defaults_match_the_crd_defaults(server_dry_run):
    (stored,) = server_dry_run.apply(
        {
            "apiVersion": "shoal.dev/v1alpha1",
            "kind": "ModelPool",
            "metadata": {"name": "m"},
            "spec": {"model": {"revision": "v1"}},
        }
    )
    assert parse_pool_spec(stored["spec"]) == parse_pool_spec({"model": {"revision": "v1"}})


@pytest.mark.parametrize(
    "spec,field",
    [
        ({"model": {"revision": "v1", "source": "huggingface"}}, "spec.model.source"),
        ({"model": {"revision": "V1"}}, "spec.model.revision"),
        ({"model": {"revision": "v1"}, "replicas": -1}, "spec.replicas"),
        ({"model": {"revision": "v1"}, "rollout": {"steps": [{"weight": 50}, {"weight": 20}]}}, "spec.rollout.steps"),
        (
            {"model": {"revision": "v1"}, "rollout": {"steps": [{"weight": 5, "pause": "soon"}]}},
            "spec.rollout.steps[0].pause",
        ),
        ({"model": {"revision": "v1"}, "runtime": {"device": "cpu"}, "resources": {"gpus": 2}}, "spec.resources.gpus"),
        ({"model": {"revision": "v1"}, "qos": {"batchShareMin": 0.9, "batchShareMax": 0.2}}, "spec.qos.batchShareMin"),
        ({"model": {"revision": "v1"}, "tenants": [{"name": "a"}, {"name": "a"}]}, "spec.tenants"),
        ({"model": {"revision": "v1"}, "replicaz": 3}, "spec.replicaz: unknown field (known: "),
        ({"model": {"revision": "v1"}, "runtime": {"maxNumSeqs": "many"}}, "spec.runtime.maxNumSeqs"),
        ({"model": {"revision": "v1", "weights": {"path": "/w"}}}, "spec.model.weights.version: required"),
        ({"model": {"revision": "v1", "weights": {"version": "v2"}}}, "spec.model.weights.path: required"),
        ({"model": {"revision": "v1", "weights": {"version": "initial", "path": "/w"}}}, "spec.model.weights.version"),
        ({"model": {"revision": "v1", "weights": {"version": "v2", "path": "w"}}}, "spec.model.weights.path"),
        ({"model": {"revision": "v1"}, "runtime": {"compileCache": {"pvc": "x"}}}, "spec.runtime.compileCache.pvc"),
        ({"model": {"revision": "v1"}, "speculative": {"method": "draft"}}, "spec.speculative.method"),
        (
            {"model": {"revision": "v1"}, "speculative": {"numSpeculativeTokens": 0}},
            "spec.speculative.numSpeculativeTokens",
        ),
        (
            {"model": {"revision": "v1"}, "speculative": {"numSpeculativeTokens": 17}},
            "spec.speculative.numSpeculativeTokens",
        ),
        ({"model": {"revision": "v1"}, "speculative": {"promptLookupMin": 0}}, "spec.speculative.promptLookupMin"),
        (
            {"model": {"revision": "v1"}, "speculative": {"promptLookupMin": 4}},
            "spec.speculative.promptLookupMin: must not exceed promptLookupMax (3)",
        ),
        ({"model": {"revision": "v1"}, "speculative": {"disableBatchSize": 0}}, "spec.speculative.disableBatchSize"),
        ({"model": {"revision": "v1"}, "speculative": {"minAcceptance": 1.5}}, "spec.speculative.minAcceptance"),
        ({"model": {"revision": "v1"}, "speculative": {"qosClasses": ["bulk"]}}, "spec.speculative.qosClasses[0]"),
        (
            {"model": {"revision": "v1"}, "speculative": {"qosClasses": ["batch", "batch"]}},
            "spec.speculative.qosClasses[1]: 'batch' is used twice",
        ),
        ({"model": {"revision": "v1"}, "speculative": {"draftModel": "x"}}, "spec.speculative.draftModel: given with"),
        (
            {"model": {"revision": "v1"}, "speculative": {"method": "draft_model"}},
            "spec.speculative.draftModel: given with method draft_model",
        ),
        ({"model": {"revision": "v1"}, "autoscaling": {}}, "spec.autoscaling.maxReplicas: required"),
        ({"model": {"revision": "v1"}, "autoscaling": {"maxReplicas": 0}}, "spec.autoscaling.maxReplicas"),
        (
            {"model": {"revision": "v1"}, "autoscaling": {"minReplicas": 4, "maxReplicas": 2}},
            "spec.autoscaling.minReplicas: must not exceed maxReplicas (2)",
        ),
        (
            {"model": {"revision": "v1"}, "autoscaling": {"maxReplicas": 2, "metrics": [{"type": "gpu", "target": 1}]}},
            "spec.autoscaling.metrics[0].type: must be one of waitingPerReplica, kvCacheUsage, ttftP95",
        ),
        (
            {
                "model": {"revision": "v1"},
                "autoscaling": {"maxReplicas": 2, "metrics": [{"type": "ttftP95", "target": 0}]},
            },
            "spec.autoscaling.metrics[0].target: must be > 0",
        ),
        (
            {
                "model": {"revision": "v1"},
                "autoscaling": {"maxReplicas": 2, "metrics": [{"type": "kvCacheUsage", "target": 80}]},
            },
            "spec.autoscaling.metrics[0].target: must be <= 1.0",
        ),
        (
            {
                "model": {"revision": "v1"},
                "autoscaling": {"maxReplicas": 2, "metrics": [{"type": "ttftP95", "target": 1}] * 2},
            },
            "spec.autoscaling.metrics: must name each signal at most once",
        ),
        ({"model": {"revision": "v1"}, "autoscaling": {"maxReplicas": 2, "metrics": []}}, "spec.autoscaling.metrics"),
        (
            {"model": {"revision": "v1"}, "autoscaling": {"maxReplicas": 2, "behavior": {"scaleUp": {"maxStep": 1}}}},
            "spec.autoscaling.behavior.scaleUp.maxStep: unknown field",
        ),
    ],
)
def test_what_the_schema_would_catch_is_caught_again_with_the_field_named(spec, field):
    with pytest.raises(SpecError) as error:
        parse_pool_spec(spec)
    assert str(error.value).startswith(field)


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("2m", 120), ("1h30m", 5400), ("250ms", 0.25), ("1.5m", 90)])
def test_durations(text, seconds):
    assert parse_duration(text, "x") == seconds


def test_gpu_memory_utilization_falls_back_to_its_deprecated_name_and_says_so():
    new = parse_pool_spec({"model": {"revision": "v1"}, "runtime": {"gpuMemoryUtilization": 0.8}})
    old = parse_pool_spec({"model": {"revision": "v1"}, "runtime": {"kvCacheFraction": 0.8}})
    assert new.runtime == old.runtime and new.runtime.gpu_memory_utilization == 0.8
    assert new.deprecated == () and old.deprecated == (
        "spec.runtime.kvCacheFraction is deprecated: use spec.runtime.gpuMemoryUtilization (the same value)",
    )
    assert revision_name(new) == revision_name(old)  # renaming the field in a spec is no rollout
    with pytest.raises(SpecError, match=r"^spec.runtime.kvCacheFraction: deprecated name of gpuMemoryUtilization"):
        parse_pool_spec({"model": {"revision": "v1"}, "runtime": {"gpuMemoryUtilization": 0.8, "kvCacheFraction": 0.8}})


def test_revision_names_did_not_change_with_the_field_rename():
    """Pinned from before gpuMemoryUtilization: a changed name would roll out every pool again."""
    assert revision_name(parse_pool_spec({"model": {"revision": "v1"}})) == "v1-f1363a"
    assert (
        revision_name(parse_pool_spec({"model": {"revision": "v1"}, "runtime": {"gpuMemoryUtilization": 0.85}}))
        == "v1-d02e31"
    )


def test_weights_and_an_unset_compile_cache_leave_the_revision_name_alone():
    """Weights roll in place (no new revision); a compile cache changes the pods, so it is one."""
    base = parse_pool_spec({"model": {"revision": "v1"}})
    weighted = parse_pool_spec({"model": {"revision": "v1", "weights": {"version": "step-120", "path": "/models/s"}}})
    assert weighted.model.weights == WeightsSpec("step-120", "/models/s")
    assert revision_name(weighted) == revision_name(base) == "v1-f1363a"
    cached = parse_pool_spec({"model": {"revision": "v1"}, "runtime": {"compileCache": {}}})
    assert cached.runtime.compile_cache == CompileCache() and revision_name(cached) != revision_name(base)
    on_claim = parse_pool_spec({"model": {"revision": "v1"}, "runtime": {"compileCache": {"volumeClaim": "triton"}}})
    assert on_claim.runtime.compile_cache == CompileCache("triton") and revision_name(on_claim) != revision_name(cached)


def test_speculative_defaults_are_the_runtimes_and_off():
    """Absent or {}, the runtime's own defaults (method none: no drafts) and both QoS classes."""
    absent = parse_pool_spec({"model": {"revision": "v1"}})
    empty = parse_pool_spec({"model": {"revision": "v1"}, "speculative": {}})
    assert absent.speculative == empty.speculative == SpeculativeSpec(SpeculativeConfig(), QOS_CLASSES)
    assert not absent.speculative.config.enabled
    assert set(SPECULATIVE_METHODS) <= set(METHODS)  # only what the runtime has


def test_speculative_fields_become_the_runtimes_config():
    spec = parse_pool_spec(
        {
            "model": {"revision": "v1"},
            "speculative": {
                "method": "ngram",
                "numSpeculativeTokens": 8,
                "promptLookupMin": 2,
                "promptLookupMax": 5,
                "disableBatchSize": 64,
                "minAcceptance": 0,
                "qosClasses": ["batch"],
            },
        }
    )
    assert spec.speculative == SpeculativeSpec(
        SpeculativeConfig(
            method="ngram",
            num_speculative_tokens=8,
            prompt_lookup_min=2,
            prompt_lookup_max=5,
            disable_batch_size=64,
            min_acceptance=0.0,
        ),
        ("batch",),
    )
    no_class = parse_pool_spec({"model": {"revision": "v1"}, "speculative": {"method": "ngram", "qosClasses": []}})
    assert no_class.speculative.qos_classes == ()  # the runtime may draft, the router lets no request


def test_speculation_is_part_of_the_revision_only_when_on_and_qos_classes_never():
    """It changes the pods' args (a canary judges the new speed); off, or who may use it, changes no pod."""
    base = parse_pool_spec({"model": {"revision": "v1"}})

    def name(speculative: dict) -> str:
        return revision_name(parse_pool_spec({"model": {"revision": "v1"}, "speculative": speculative}))

    assert name({}) == name({"method": "none", "numSpeculativeTokens": 8}) == revision_name(base) == "v1-f1363a"
    ngram = name({"method": "ngram"})
    assert ngram != revision_name(base)
    assert name({"method": "ngram", "numSpeculativeTokens": 8}) != ngram
    assert name({"method": "ngram", "disableBatchSize": 32}) != ngram
    assert name({"method": "ngram", "qosClasses": ["batch"]}) == ngram


def test_the_api_server_and_the_operator_read_speculative_alike(server_dry_run):
    """{} is stored with every default and parsed as absent; min above max is refused by both, naming it."""
    manifest = {"apiVersion": "shoal.dev/v1alpha1", "kind": "ModelPool", "metadata": {"name": "m"}}
    (stored,) = server_dry_run.apply({**manifest, "spec": {"model": {"revision": "v1"}, "speculative": {}}})
    assert parse_pool_spec(stored["spec"]) == parse_pool_spec({"model": {"revision": "v1"}})
    spec = {"model": {"revision": "v1"}, "speculative": {"method": "ngram", "promptLookupMin": 4}}
    refusal = server_dry_run.refusal({**manifest, "spec": spec})
    assert "spec.speculative.promptLookupMin: Invalid value" in refusal, refusal
    with pytest.raises(SpecError, match=r"^spec.speculative.promptLookupMin: must not exceed promptLookupMax"):
        parse_pool_spec(spec)


@pytest.mark.parametrize(
    "weights,field,says",
    [
        ({"version": "initial", "path": "/w"}, "spec.model.weights.version", "names the source's weights"),
        ({"version": "v2", "path": "w"}, "spec.model.weights.path", "should match '^/'"),
        ({"version": "v2"}, "spec.model.weights.path", "Required value"),
    ],
)
def test_the_api_server_refuses_weights_the_operator_would(server_dry_run, weights, field, says):
    spec = {"model": {"revision": "v1", "weights": weights}}
    refusal = server_dry_run.refusal(
        {"apiVersion": "shoal.dev/v1alpha1", "kind": "ModelPool", "metadata": {"name": "m"}, "spec": spec}
    )
    assert field in refusal and says in refusal, refusal
    with pytest.raises(SpecError, match=f"^{field}"):
        parse_pool_spec(spec)


def test_the_api_server_and_the_operator_read_autoscaling_alike(server_dry_run):
    """Only maxReplicas given: stored with every default, parsed as the dataclass's defaults; and an
    autoscaling pool is the same revision as one without (no rollout to turn it on)."""
    manifest = {"apiVersion": "shoal.dev/v1alpha1", "kind": "ModelPool", "metadata": {"name": "m"}}
    spec = {"model": {"revision": "v1"}, "autoscaling": {"maxReplicas": 8}}
    (stored,) = server_dry_run.apply({**manifest, "spec": spec})
    assert parse_pool_spec(stored["spec"]) == parse_pool_spec(spec)
    assert parse_pool_spec(spec).autoscaling == AutoscalingSpec(max_replicas=8)
    assert revision_name(parse_pool_spec(spec)) == "v1-f1363a"


def _crd_defaults(schema: dict, path: str = "") -> dict:
    """Dotted path -> the `default:` the CRD gives it (objects defaulted to {} left out)."""
    found = {}
    if "default" in schema and schema["default"] != {}:
        found[path] = schema["default"]
    for name, child in schema.get("properties", {}).items():
        found |= _crd_defaults(child, f"{path}.{name}" if path else name)
    if "items" in schema:
        found |= _crd_defaults(schema["items"], f"{path}[]")
    return found


def test_the_crds_defaults_are_the_dataclasses_defaults():
    """Every `default:` in crds/modelpool.yaml against the field the operator falls back to."""
    from shoal.operator.spec import (
        DEFAULT_PAUSE,
        Analysis,
        ModelSpec,
        ParallelismSpec,
        PoolSpec,
        QosSpec,
        ResourcesSpec,
        RolloutSpec,
        RuntimeSpec,
        SpeculativeSpec,
    )
    from shoal.route_contract import ColdStart
    from shoal.runtime.config import GPU_MAX_NUM_BATCHED_TOKENS, EngineConfig

    (version,) = yaml.safe_load((ROOT / "crds" / "modelpool.yaml").read_text())["spec"]["versions"]
    spec_schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    expected = {
        "model.source": ModelSpec.source,
        "model.dtype": ModelSpec.dtype,
        "replicas": PoolSpec.replicas,
        "runtime.image": RuntimeSpec.image,
        "runtime.imagePullPolicy": RuntimeSpec.image_pull_policy,
        "runtime.device": RuntimeSpec.device,
        "runtime.maxNumSeqs": RuntimeSpec.max_num_seqs,
        "runtime.maxNumBatchedTokens": RuntimeSpec.max_num_batched_tokens,
        "runtime.blockSize": RuntimeSpec.block_size,
        "resources.gpus": ResourcesSpec.gpus,
        "parallelism.tensor": ParallelismSpec.tensor,
        "parallelism.pipeline": ParallelismSpec.pipeline,
        "rollout.steps": [{"weight": s.weight, "pause_s": s.pause_s} for s in RolloutSpec.steps],
        "rollout.steps[].pause": parse_duration(DEFAULT_PAUSE, "x"),
        "rollout.analysis.maxP99LatencyRatio": Analysis.max_p99_latency_ratio,
        "rollout.analysis.minP99LatencyIncreaseSeconds": Analysis.min_p99_latency_increase_s,
        "rollout.analysis.maxErrorRate": Analysis.max_error_rate,
        "rollout.analysis.maxPreemptions": Analysis.max_preemptions,
        "rollout.analysis.maxOomErrors": Analysis.max_oom_errors,
        "rollout.analysis.minKvFreeFraction": Analysis.min_kv_free_fraction,
        "rollout.analysis.minSamples": Analysis.min_samples,
        "rollout.analysis.windowSeconds": Analysis.window_s,
        "rollout.progressDeadline": RolloutSpec.progress_deadline_s,
        "qos.maxConcurrencyPerReplica": QosSpec.max_concurrency_per_replica,
        "qos.realtimeTtftTargetSeconds": QosSpec.realtime_ttft_target_s,
        "qos.batchShareMin": QosSpec.batch_share_min,
        "qos.batchShareMax": QosSpec.batch_share_max,
        "speculative.method": SpeculativeSpec.config.method,
        "speculative.numSpeculativeTokens": SpeculativeSpec.config.num_speculative_tokens,
        "speculative.promptLookupMin": SpeculativeSpec.config.prompt_lookup_min,
        "speculative.promptLookupMax": SpeculativeSpec.config.prompt_lookup_max,
        "speculative.minAcceptance": SpeculativeSpec.config.min_acceptance,
        "speculative.qosClasses": list(SpeculativeSpec.qos_classes),
        "coldStart.enabled": ColdStart.enabled,
        "coldStart.maxQueued": ColdStart.max_queued,
        "coldStart.maxWaitSeconds": ColdStart.max_wait_s,
        "autoscaling.minReplicas": AutoscalingSpec.min_replicas,
        "autoscaling.metrics": [{"type": m.signal, "target": m.target} for m in AutoscalingSpec.metrics],
        "autoscaling.behavior.scaleUp.stabilizationWindowSeconds": AutoscalingSpec.scale_up.stabilization_window_s,
        "autoscaling.behavior.scaleUp.periodSeconds": AutoscalingSpec.scale_up.period_s,
        "autoscaling.behavior.scaleDown.stabilizationWindowSeconds": AutoscalingSpec.scale_down.stabilization_window_s,
        "autoscaling.behavior.scaleDown.periodSeconds": AutoscalingSpec.scale_down.period_s,
        "autoscaling.tolerance": AutoscalingSpec.tolerance,
        "autoscaling.scaleToZeroAfterSeconds": AutoscalingSpec.scale_to_zero_after_s,
        "autoscaling.rollbackCooldownSeconds": AutoscalingSpec.rollback_cooldown_s,
    }
    durations = {"rollout.steps[].pause", "rollout.progressDeadline"}
    crd = {
        path: parse_duration(value, path) if path in durations else value
        for path, value in _crd_defaults(spec_schema).items()
    }
    crd["rollout.steps"] = [
        {"weight": s["weight"], "pause_s": parse_duration(s["pause"], "x")} for s in crd["rollout.steps"]
    ]
    assert crd == expected
    # The step limits have no schema default (one given replaces both, spec.py); the description
    # states the operator's.
    up, down = AutoscalingSpec.scale_up, AutoscalingSpec.scale_down
    behavior = spec_schema["properties"]["autoscaling"]["properties"]["behavior"]
    assert (up.max_step_replicas, up.max_step_percent, down.max_step_replicas, down.max_step_percent) == (
        4,
        100,
        None,
        100,
    )
    assert "neither: up 4 replicas or 100 %, down 100 % per 15 s" in behavior["description"]
    # The runtime's defaults are the runtime's own, and so are the CRD's.
    assert (RuntimeSpec.max_num_seqs, RuntimeSpec.max_num_batched_tokens, RuntimeSpec.block_size) == (
        EngineConfig.max_num_seqs,
        GPU_MAX_NUM_BATCHED_TOKENS,
        EngineConfig.block_size,
    )
    # gpuMemoryUtilization has no schema default (see the CRD); its description states the operator's.
    runtime = spec_schema["properties"]["runtime"]["properties"]
    assert "default" not in runtime["gpuMemoryUtilization"] and "default" not in runtime["kvCacheFraction"]
    assert f"Default {RuntimeSpec.gpu_memory_utilization:g}." in runtime["gpuMemoryUtilization"]["description"]
    assert RuntimeSpec.gpu_memory_utilization == EngineConfig.gpu_memory_utilization
    # Speculation's are the runtime's SpeculativeConfig's, and its disableBatchSize is unset by default too.
    assert SpeculativeSpec.config == SpeculativeConfig() and SpeculativeConfig.disable_batch_size is None
    assert "default" not in spec_schema["properties"]["speculative"]["properties"]["disableBatchSize"]
