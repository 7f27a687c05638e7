"""The plan of a reconcile pass, a pure function: children, route, status and events."""

import json

from shoal.operator.children import (
    ADMIN_TOKEN_MOUNT,
    COMPILE_CACHE_MOUNT,
    GRPC_PORT,
    PoolRef,
    desired_admin_secret,
)
from shoal.operator.plan import ACTION_ANNOTATION, Observed, PoolObject, plan_for
from shoal.operator.revisions import revision_name
from shoal.operator.rollout import RouterView
from shoal.operator.spec import parse_pool_spec
from shoal.route_contract import Breach, ErrorRateRule, LatencyRatioRule, ScrapeHealth, TenantLimit, Verdict
from shoal.runtime.speculative.config import SpeculativeConfig

REF = PoolRef("chat", "team-a", "uid-1")
SPEC = {
    "model": {"source": "embedded", "revision": "v1"},
    "replicas": 2,
    "runtime": {"device": "cpu", "kvCacheMemory": "64MiB"},
    "resources": {"gpus": 0},
    "rollout": {"steps": [{"weight": 20, "pause": "10s"}], "analysis": {"minSamples": 5}},
    "tenants": [{"name": "acme", "maxConcurrent": 2}],
}
T0 = 2_000_000.0
OK = RouterView(reachable=True)


def pool(spec=SPEC, status=None, annotations=None, generation=1):
    return PoolObject(REF, generation, spec, status or {}, annotations or {})


def pod(revision, ip, ready=True, deleting=False):
    metadata = {"name": f"p-{ip}", "labels": {"shoal.dev/pool": "chat", "shoal.dev/revision": revision}}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": metadata,
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def test_new_pool_gets_a_deployment_a_service_a_route_and_pending_status():
    plan = plan_for(pool(), Observed([], []), OK, T0, drain_s=30)
    revision = revision_name(parse_pool_spec(SPEC))
    ((name, deployment),) = plan.deployments.items()
    assert name == f"chat-{revision}" and deployment["spec"]["replicas"] == 2
    assert deployment["metadata"]["ownerReferences"][0] == {
        "apiVersion": "shoal.dev/v1alpha1",
        "kind": "ModelPool",
        "name": "chat",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["shoal", "runtime"]
    args = container["args"]
    assert args[args.index("--model") + 1] == "default" and args[args.index("--device") + 1] == "cpu"
    assert args[args.index("--pool") + 1] == "team-a.chat" and args[args.index("--revision") + 1] == revision
    assert args[args.index("--kv-cache-memory") + 1] == "64MiB" and "--gpu-memory-utilization" not in args
    assert "nvidia.com/gpu" not in str(container["resources"])
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}
    assert plan.service["spec"]["selector"] == {"shoal.dev/pool": "chat"}
    assert plan.route.name == "team-a.chat" and plan.route.model == "chat"
    assert plan.route.stable == revision and plan.route.canary is None
    assert plan.route.revisions == {revision: ()}
    assert plan.route.tenants == (TenantLimit("acme", max_concurrent=2),)
    assert ErrorRateRule(max_rate=0.01, min_samples=5, window_s=60.0) in plan.route.rollback_rules
    assert (
        LatencyRatioRule(
            metric="e2e", quantile=0.99, max_ratio=1.3, min_difference_s=0.05, min_samples=5, window_s=60.0
        )
        in plan.route.rollback_rules
    )
    assert plan.status["phase"] == "Pending" and plan.status["observedGeneration"] == 1
    assert plan.status["stableRevision"] == revision and plan.status["selector"] == "shoal.dev/pool=chat"
    assert {c["type"]: c["status"] for c in plan.status["conditions"]} == {
        "Ready": "False",
        "Progressing": "False",
        "Degraded": "False",
        "RolledBack": "False",
        "MetricsScraped": "True",
        "WeightsUpdated": "True",  # no spec.model.weights: nothing to roll
    }


def test_ready_pods_become_route_endpoints_and_the_pool_ready():
    first = plan_for(pool(), Observed([], []), OK, T0, 30)
    revision = first.status["stableRevision"]
    pods = [
        pod(revision, "10.0.0.2"),
        pod(revision, "10.0.0.3"),
        pod(revision, "10.0.0.4", ready=False),
        pod(revision, "10.0.0.5", deleting=True),
    ]
    plan = plan_for(pool(status=first.status), Observed(list(first.deployments.values()), pods), OK, T0 + 5, 30)
    endpoints = plan.route.revisions[revision]
    assert [e.target for e in endpoints] == [f"10.0.0.2:{GRPC_PORT}", f"10.0.0.3:{GRPC_PORT}"]
    assert endpoints[0].metrics_url == "http://10.0.0.2:8001/metrics"
    assert plan.status["phase"] == "Ready" and plan.status["readyReplicas"] == 2
    ready = next(c for c in plan.status["conditions"] if c["type"] == "Ready")
    before = next(c for c in first.status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["lastTransitionTime"] != before["lastTransitionTime"]


def test_a_revision_change_adds_a_canary_deployment_and_keeps_the_stable_template():
    first = plan_for(pool(), Observed([], []), OK, T0, 30)
    stable = first.status["stableRevision"]
    changed = {**SPEC, "model": {"source": "embedded", "revision": "v2"}}
    plan = plan_for(
        pool(changed, first.status, generation=2),
        Observed(list(first.deployments.values()), [pod(stable, "10.0.0.2"), pod(stable, "10.0.0.3")]),
        OK,
        T0 + 5,
        30,
    )
    canary = plan.status["canaryRevision"]
    assert canary.startswith("v2-") and plan.status["phase"] == "Progressing"
    assert set(plan.deployments) == {f"chat-{stable}", f"chat-{canary}"}
    stable_args = plan.deployments[f"chat-{stable}"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert stable_args[stable_args.index("--revision") + 1] == stable
    assert plan.deployments[f"chat-{canary}"]["spec"]["replicas"] == 1
    assert plan.route.canary == canary and plan.route.canary_weight == 0.0
    assert plan.status["observedGeneration"] == 2


def test_runtime_only_change_is_a_new_revision_too():
    other = {**SPEC, "runtime": {"device": "cpu", "kvCacheMemory": "64MiB", "args": ["--fault-error-rate", "0.5"]}}
    assert revision_name(parse_pool_spec(other)) != revision_name(parse_pool_spec(SPEC))
    assert revision_name(parse_pool_spec({**SPEC, "replicas": 7})) == revision_name(parse_pool_spec(SPEC))


def test_rollback_shows_in_status_and_drained_deployments_go():
    first = plan_for(pool(), Observed([], []), OK, T0, 30)
    stable = first.status["stableRevision"]
    changed = {**SPEC, "model": {"source": "embedded", "revision": "v2"}}
    started = plan_for(pool(changed, first.status), Observed([], []), OK, T0 + 1, 30)
    canary = started.status["canaryRevision"]
    verdict = Verdict(
        canary, (Breach("error_rate", {"canary_error_rate": 0.4}, "<= 0.01 over 60s"),), at=T0 + 1.5, weight_before=20.0
    )
    deployments = list(started.deployments.values())
    aborted = plan_for(
        pool(changed, started.status),
        Observed(deployments, []),
        RouterView(True, verdicts={canary: verdict}),
        T0 + 2,
        30,
    )
    status = aborted.status
    assert (
        status["phase"] == "RolledBack" and status["canaryRevision"] is None and status["rolledBackRevision"] == canary
    )
    rolled = next(c for c in status["conditions"] if c["type"] == "RolledBack")
    assert rolled["status"] == "True" and "error_rate" in rolled["message"]
    assert status["lastRollback"]["rules"][0]["observed"] == {"canary_error_rate": 0.4}
    assert aborted.route.canary is None and aborted.delete_deployments == ()  # still draining
    assert [e.reason for e in aborted.events] == ["RolledBack"]
    later = plan_for(pool(changed, status), Observed(deployments, []), OK, T0 + 40, 30)
    assert later.delete_deployments == (f"chat-{canary}",) and set(later.deployments) == {f"chat-{stable}"}
    assert later.events == ()


def test_a_revision_whose_metrics_fail_shows_in_the_metrics_scraped_condition():
    first = plan_for(pool(), Observed([], []), OK, T0, 30)
    stable = first.status["stableRevision"]
    changed = {**SPEC, "model": {"source": "embedded", "revision": "v2"}}
    started = plan_for(pool(changed, first.status), Observed([], []), OK, T0 + 1, 30)
    canary = started.status["canaryRevision"]
    blind = RouterView(True, unscraped={canary: ScrapeHealth(endpoints=2, failing=1)})
    plan = plan_for(pool(changed, started.status), Observed(list(started.deployments.values()), []), blind, T0 + 2, 30)
    conditions = {c["type"]: c for c in plan.status["conditions"]}
    scraped = conditions["MetricsScraped"]
    assert scraped["status"] == "False" and scraped["reason"] == "ScrapeFailing"
    assert f"1/2 runtimes of canary {canary}" in scraped["message"] and stable not in scraped["message"]
    assert "preemptions, oom_errors, kv_free" in scraped["message"] and "holds its step" in scraped["message"]
    assert conditions["RolledBack"]["status"] == "False" and plan.status["canaryRevision"] == canary
    unreachable = plan_for(pool(changed, plan.status), Observed([], []), RouterView(False, error="refused"), T0 + 3, 30)
    assert {c["type"]: c["reason"] for c in unreachable.status["conditions"]}["MetricsScraped"] == "RouterUnreachable"


def test_invalid_spec_is_degraded_once_and_touches_nothing():
    first = plan_for(pool(), Observed([], []), OK, T0, 30)
    bad = {**SPEC, "model": {"source": "random", "revision": "v2"}}
    plan = plan_for(pool(bad, first.status), Observed(list(first.deployments.values()), []), OK, T0 + 1, 30)
    assert plan.route is None and plan.deployments == {} and plan.delete_deployments == () and plan.service is None
    degraded = next(c for c in plan.status["conditions"] if c["type"] == "Degraded")
    assert (
        degraded["status"] == "True"
        and degraded["reason"] == "InvalidSpec"
        and "spec.model.config" in degraded["message"]
    )
    assert plan.status["phase"] == "Degraded" and "stableRevision" not in plan.status  # rollout state kept
    assert [e.reason for e in plan.events] == ["InvalidSpec"]
    again = plan_for(pool(bad, {**first.status, **plan.status}), Observed([], []), OK, T0 + 2, 30)
    assert again.events == ()


def test_unreachable_router_is_degraded_but_children_are_kept():
    plan = plan_for(pool(), Observed([], []), RouterView(False, error="connection refused"), T0, 30)
    degraded = next(c for c in plan.status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "RouterUnreachable" and "connection refused" in degraded["message"]
    assert plan.deployments and plan.route is not None


def test_action_annotation_is_cleared_and_unknown_actions_warned():
    first = plan_for(pool(), Observed([], []), OK, T0, 30)
    plan = plan_for(
        pool(status=first.status, annotations={ACTION_ANNOTATION: "yolo"}), Observed([], []), OK, T0 + 1, 30
    )
    assert plan.clear_action and [e.reason for e in plan.events] == ["UnknownAction"]


def test_a_deprecated_field_is_read_and_named_in_a_warning_condition():
    old = {**SPEC, "runtime": {"device": "cpu", "kvCacheMemory": "64MiB", "kvCacheFraction": 0.8}}
    plan = plan_for(pool(old), Observed([], []), OK, T0, 30)
    deprecated = next(c for c in plan.status["conditions"] if c["type"] == "DeprecatedFields")
    assert deprecated["status"] == "True" and deprecated["reason"] == "DeprecatedFieldsSet"
    assert "spec.runtime.kvCacheFraction is deprecated: use spec.runtime.gpuMemoryUtilization" in deprecated["message"]
    assert plan.status["phase"] == "Pending" and plan.route is not None  # a warning, nothing more
    renamed = {**SPEC, "runtime": {"device": "cpu", "kvCacheMemory": "64MiB", "gpuMemoryUtilization": 0.8}}
    later = plan_for(pool(renamed, plan.status), Observed([], []), OK, T0 + 1, 30)
    assert "DeprecatedFields" not in {c["type"] for c in later.status["conditions"]}
    assert later.status["stableRevision"] == plan.status["stableRevision"]  # the same revision, no rollout


def test_gpu_memory_utilization_becomes_the_runtimes_flag_on_cuda():
    gpu = {**SPEC, "runtime": {"gpuMemoryUtilization": 0.75}, "resources": {"gpus": 1}}
    (deployment,) = plan_for(pool(gpu), Observed([], []), OK, T0, 30).deployments.values()
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--gpu-memory-utilization") + 1] == "0.75"


def test_runtime_pods_get_the_admin_token_and_a_compile_cache():
    """The token always (naming weights later changes no pod), the cache when the spec asks for one."""
    cached = {**SPEC, "runtime": {"device": "cpu", "compileCache": {"volumeClaim": "triton-cache"}}}
    plain, with_cache = (
        next(iter(plan_for(pool(spec), Observed([], []), OK, T0, 30).deployments.values()))["spec"]["template"]["spec"]
        for spec in (SPEC, cached)
    )
    for pod_spec in (plain, with_cache):
        assert {"name": "runtime-admin", "secret": {"secretName": "chat-runtime-admin", "defaultMode": 0o440}} in (
            pod_spec["volumes"]
        )
        (container,) = pod_spec["containers"]
        args = container["args"]
        token_file = args[args.index("--admin-token-file") + 1]
        assert token_file == f"{ADMIN_TOKEN_MOUNT}/token"
        assert {"name": "runtime-admin", "mountPath": ADMIN_TOKEN_MOUNT, "readOnly": True} in container["volumeMounts"]
    assert "--compile-cache-dir" not in plain["containers"][0]["args"]
    assert {"name": "compile-cache", "persistentVolumeClaim": {"claimName": "triton-cache"}} in with_cache["volumes"]
    args = with_cache["containers"][0]["args"]
    assert args[args.index("--compile-cache-dir") + 1] == COMPILE_CACHE_MOUNT
    assert {"name": "compile-cache", "mountPath": COMPILE_CACHE_MOUNT} in with_cache["containers"][0]["volumeMounts"]
    secret = desired_admin_secret(REF, "s3cret")
    assert secret["metadata"]["name"] == "chat-runtime-admin" and secret["stringData"] == {"token": "s3cret"}
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "uid-1"  # goes with the pool


def args_of(deployment: dict) -> list[str]:
    return deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def test_speculation_is_the_runtimes_speculative_config_flag():
    """On: --speculative-config with the runtime's keys, every value given; off (or absent): no flag."""
    ngram = {
        **SPEC,
        "speculative": {"method": "ngram", "numSpeculativeTokens": 6, "promptLookupMax": 4, "disableBatchSize": 32},
    }
    (deployment,) = plan_for(pool(ngram), Observed([], []), OK, T0, 30).deployments.values()
    args = args_of(deployment)
    assert json.loads(args[args.index("--speculative-config") + 1]) == {
        "method": "ngram",
        "num_speculative_tokens": 6,
        "prompt_lookup_min": 1,
        "prompt_lookup_max": 4,
        "disable_batch_size": 32,
        "min_acceptance": 0.2,
    }
    config = SpeculativeConfig(**json.loads(args[args.index("--speculative-config") + 1]))
    assert config == parse_pool_spec(ngram).speculative.config and config.enabled
    unlimited = {**SPEC, "speculative": {"method": "ngram"}}
    (deployment,) = plan_for(pool(unlimited), Observed([], []), OK, T0, 30).deployments.values()
    args = args_of(deployment)
    assert SpeculativeConfig(**json.loads(args[args.index("--speculative-config") + 1])) == SpeculativeConfig("ngram")
    drafted = {**SPEC, "speculative": {"method": "draft_model", "draftModel": "/models/small"}}
    (deployment,) = plan_for(pool(drafted), Observed([], []), OK, T0, 30).deployments.values()
    args = args_of(deployment)
    config = SpeculativeConfig(**json.loads(args[args.index("--speculative-config") + 1]))
    assert config == SpeculativeConfig("draft_model", model="/models/small")
    for off in (SPEC, {**SPEC, "speculative": {"method": "none", "numSpeculativeTokens": 8}}):
        (deployment,) = plan_for(pool(off), Observed([], []), OK, T0, 30).deployments.values()
        assert "--speculative-config" not in args_of(deployment)


def test_turning_speculation_on_is_a_canary_and_the_stable_keeps_its_own():
    """A new revision, judged as any; while it runs the stable's pods (from its template) stay as they were,
    speculation included; the route tells the router who may speculate."""
    on = {**SPEC, "speculative": {"method": "ngram", "qosClasses": ["batch"]}}
    first = plan_for(pool(on), Observed([], []), OK, T0, 30)
    stable = first.status["stableRevision"]
    assert first.route.speculative.qos_classes == ("batch",)
    assert first.status["stableTemplate"]["speculative"] == on["speculative"]
    pods = [pod(stable, "10.0.0.2"), pod(stable, "10.0.0.3")]
    same = {**on, "speculative": {"method": "ngram", "qosClasses": ["realtime", "batch"]}}
    plan = plan_for(
        pool(same, first.status, generation=2), Observed(list(first.deployments.values()), pods), OK, T0, 30
    )
    assert plan.status.get("canaryRevision") is None and plan.route.speculative.qos_classes == ("realtime", "batch")
    more = {**on, "speculative": {"method": "ngram", "numSpeculativeTokens": 8}}
    plan = plan_for(
        pool(more, first.status, generation=3), Observed(list(first.deployments.values()), pods), OK, T0, 30
    )
    canary = plan.status["canaryRevision"]
    assert canary != stable and plan.status["phase"] == "Progressing"
    stable_args, canary_args = (args_of(plan.deployments[f"chat-{r}"]) for r in (stable, canary))
    assert stable_args == args_of(first.deployments[f"chat-{stable}"])
    assert json.loads(stable_args[stable_args.index("--speculative-config") + 1])["num_speculative_tokens"] == 4
    assert json.loads(canary_args[canary_args.index("--speculative-config") + 1])["num_speculative_tokens"] == 8


def test_the_runtime_reads_every_flag_the_operator_passes():
    """The pod's args through `shoal runtime`'s own parser, with every optional flag in use."""
    import argparse

    from shoal.runtime.cli import add_arguments, configs_from_args

    full = {
        **SPEC,
        "runtime": {"device": "cpu", "kvCacheMemory": "64MiB", "maxWaiting": 8, "compileCache": {}},
        "model": {"source": "embedded", "revision": "v1", "weights": {"version": "v2", "path": "/w"}},
        "speculative": {"method": "ngram", "disableBatchSize": 16},
    }
    (deployment,) = plan_for(pool(full), Observed([], []), OK, T0, 30).deployments.values()
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    engine, server = configs_from_args(
        parser.parse_args(deployment["spec"]["template"]["spec"]["containers"][0]["args"])
    )
    assert engine.compile_cache_dir == COMPILE_CACHE_MOUNT and engine.kv_cache_memory == 64 * 2**20
    assert server.admin_token_file == f"{ADMIN_TOKEN_MOUNT}/token" and server.max_waiting == 8
    assert server.weights_version == "initial"  # every pod starts on the source's weights
    assert engine.speculative == SpeculativeConfig("ngram", disable_batch_size=16)
