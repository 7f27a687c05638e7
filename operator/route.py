"""The router's Route for a pool (shoal/route_contract.py): model name, each live revision's ready
runtime endpoints, the split, the rollback rules made from spec.rollout.analysis, QoS, tenant
limits and which QoS classes may speculate.

Endpoints come from the pods themselves (ready, with an IP), not from the Service's
EndpointSlices: a terminating pod drops out at once and drains what it has.
"""

from shoal.operator.children import GRPC_PORT, METRICS_PORT, REVISION_LABEL, PoolRef
from shoal.operator.rollout import RolloutState
from shoal.operator.spec import PoolSpec
from shoal.route_contract import (
    ErrorRateRule,
    KvFreeRule,
    LatencyRatioRule,
    OomRule,
    PreemptionRule,
    QosConfig,
    Route,
    RuntimeEndpoint,
    Speculation,
    TenantLimit,
)


def pod_endpoints(pods: list[dict], leave_out: str | None = None) -> dict[str, tuple[RuntimeEndpoint, ...]]:
    """Ready runtime endpoints per revision label; `leave_out`: a target drained for a weight update."""
    endpoints: dict[str, list[RuntimeEndpoint]] = {}
    for pod in pods:
        metadata, status = pod.get("metadata", {}), pod.get("status") or {}
        revision, ip = (metadata.get("labels") or {}).get(REVISION_LABEL), status.get("podIP")
        if not revision or not ip or not is_serving(pod) or grpc_target(ip) == leave_out:
            continue
        endpoints.setdefault(revision, []).append(
            RuntimeEndpoint(grpc_target(ip), f"http://{_host(ip)}:{METRICS_PORT}/metrics")
        )
    return {revision: tuple(sorted(found, key=lambda e: e.target)) for revision, found in endpoints.items()}


def grpc_target(ip: str) -> str:
    """A runtime pod's gRPC server (shoal.v1.Runtime and RuntimeAdmin)."""
    return f"{_host(ip)}:{GRPC_PORT}"


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def is_serving(pod: dict) -> bool:
    """Ready and not terminating: a pod being deleted takes no new requests, it drains."""
    return is_ready(pod) and not pod["metadata"].get("deletionTimestamp")


def is_ready(pod: dict) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or ()
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def route_for(
    pool: PoolRef, spec: PoolSpec, state: RolloutState, endpoints: dict[str, tuple[RuntimeEndpoint, ...]]
) -> Route:
    analysis, qos = spec.rollout.analysis, spec.qos
    window = float(analysis.window_s)
    revisions = [r for r in (state.stable, state.canary) if r]
    return Route(
        name=pool.router_pool,
        model=spec.model.served_name or pool.name,
        qos_classes=qos.classes,
        stable=state.stable,
        canary=state.canary,
        canary_weight=float(state.canary_weight) if state.canary else 0.0,
        revisions={revision: endpoints.get(revision, ()) for revision in revisions},
        qos=QosConfig(
            max_concurrency_per_endpoint=qos.max_concurrency_per_replica,
            realtime_ttft_target_s=qos.realtime_ttft_target_s,
            batch_share_min=qos.batch_share_min,
            batch_share_max=qos.batch_share_max,
        ),
        rollback_rules=(
            LatencyRatioRule(
                metric="e2e",
                quantile=0.99,
                max_ratio=analysis.max_p99_latency_ratio,
                min_difference_s=analysis.min_p99_latency_increase_s,
                min_samples=analysis.min_samples,
                window_s=window,
            ),
            ErrorRateRule(max_rate=analysis.max_error_rate, min_samples=analysis.min_samples, window_s=window),
            PreemptionRule(max_count=analysis.max_preemptions, window_s=window),
            OomRule(max_count=analysis.max_oom_errors, window_s=window),
            KvFreeRule(min_free=analysis.min_kv_free_fraction, window_s=window),
        ),
        tenants=tuple(TenantLimit(t.name, t.max_concurrent, t.tokens_per_minute) for t in spec.tenants),
        speculative=Speculation(qos_classes=spec.speculative.qos_classes),
        cold_start=spec.cold_start,
    )
