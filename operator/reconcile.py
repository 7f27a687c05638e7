"""One reconcile pass against the live API: read the pool and its children fresh, ask the
routers (and, while it rolls weights, the runtimes; with autoscaling, the pool's load), compute
the Plan (plan.py), apply it (apply.py), write status, post events, and start the plan's weights
step in the background.

Passes for one pool never overlap (a lock per pool), and each reads the pool from the API
server rather than from a cached body, so two triggers close together cannot act twice.
"""

import asyncio
import logging
import time
from dataclasses import dataclass, field

import kopf

from shoal.operator.apply import apply_plan, ensure_admin_secret
from shoal.operator.autoscale.decide import LOAD_WINDOW_S, ScaleHistory
from shoal.operator.children import PoolRef, pool_selector
from shoal.operator.config import OperatorConfig
from shoal.operator.kube_api import DEPLOYMENTS, MODELPOOLS, PODS, KubeApi
from shoal.operator.metrics import OperatorMetrics, sample_of
from shoal.operator.plan import ACTION_ANNOTATION, Observed, PoolObject, plan_for
from shoal.operator.route import grpc_target, is_serving
from shoal.operator.router_client import RouterClient
from shoal.operator.runtime_admin_client import RuntimeAdminClient, WeightSteps
from shoal.operator.status import Condition, merge_conditions, seconds
from shoal.operator.weights_rollout import watched

log = logging.getLogger(__name__)


@dataclass
class OperatorContext:
    config: OperatorConfig
    kube: KubeApi
    routers: RouterClient
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    runtimes: RuntimeAdminClient = field(default_factory=RuntimeAdminClient)
    weight_steps: WeightSteps = field(default_factory=WeightSteps)
    # The autoscaler's memory of each pool (its stabilization windows, step limits, idle period):
    # in memory only, as the HPA's is; it starts empty after a restart (autoscale/decide.py says why
    # that is safe).
    scale_histories: dict[str, ScaleHistory] = field(default_factory=dict)

    def lock(self, namespace: str, name: str) -> asyncio.Lock:
        return self.locks.setdefault(f"{namespace}/{name}", asyncio.Lock())

    async def close(self) -> None:
        await self.weight_steps.cancel()
        await self.routers.close()
        await self.kube.close()


async def reconcile_pool(ctx: OperatorContext, namespace: str, name: str) -> None:
    async with ctx.lock(namespace, name):
        body = await ctx.kube.get(MODELPOOLS, namespace, name)  # fresh, inside the lock
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        ref = PoolRef(name, namespace, body["metadata"]["uid"])
        pool = PoolObject(
            ref,
            int(body["metadata"].get("generation") or 1),
            body.get("spec") or {},
            body.get("status") or {},
            body["metadata"].get("annotations") or {},
        )
        token = await ensure_admin_secret(ctx.kube, ref)  # before any pod that mounts it
        deployments = await ctx.kube.list(DEPLOYMENTS, namespace, pool_selector(ref))
        pods = await ctx.kube.list(PODS, namespace, pool_selector(ref))
        # The step's progress before the runtimes are asked: a step that ends in between is seen
        # still running (nothing new starts), not as a paused replica nobody is updating.
        progress = ctx.weight_steps.progress(ref.router_pool)
        lifecycles = await ctx.runtimes.lifecycles(_serving(pods), token) if watched(pool.spec, pool.status) else {}
        now = time.time()
        canary = pool.status.get("canaryRevision")
        started = seconds(pool.status.get("stepStartedAt"))
        view = await ctx.routers.view(ref.router_pool, canary, now - started if canary and started else None)
        autoscaled = pool.spec.get("autoscaling") is not None
        load = await ctx.routers.load(ref.router_pool, LOAD_WINDOW_S) if autoscaled else None
        history = ctx.scale_histories.get(ref.router_pool, ScaleHistory())
        observed = Observed(deployments, pods, lifecycles, progress, load, history)
        plan = plan_for(pool, observed, view, now, ctx.config.drain_s)
        try:
            await apply_plan(ctx.kube, ctx.routers, ref, plan, deployments)
        except Exception as error:
            await _report_failure(ctx, pool, plan.status, error, now)
            raise kopf.TemporaryError(
                f"applying the plan failed: {error}", delay=ctx.config.reconcile_interval_s
            ) from error
        await ctx.kube.merge_patch(MODELPOOLS, namespace, name, {"status": plan.status}, subresource="status")
        if plan.scale_history is None:
            ctx.scale_histories.pop(ref.router_pool, None)
        else:
            ctx.scale_histories[ref.router_pool] = plan.scale_history
        ctx.weight_steps.settled(ref.router_pool)
        if plan.weights_step is not None:  # the replica is out of the route (when it had to be): go
            ctx.weight_steps.start(ref.router_pool, plan.weights_step, ctx.runtimes.run(plan.weights_step, token))
        ctx.metrics.record(ref.router_pool, sample_of(plan, pods))
        if plan.clear_action:
            await ctx.kube.merge_patch(
                MODELPOOLS, namespace, name, {"metadata": {"annotations": {ACTION_ANNOTATION: None}}}
            )
        for event in plan.events:
            kopf.event(body, type=event.type, reason=event.reason, message=event.message)
            log.info("pool %s/%s: %s: %s", namespace, name, event.reason, event.message)


def _serving(pods: list[dict]) -> dict[str, str]:
    """pod -> gRPC target, for the runtimes that can answer."""
    return {
        pod["metadata"]["name"]: grpc_target(pod["status"]["podIP"])
        for pod in pods
        if is_serving(pod) and pod["status"].get("podIP")
    }


async def _report_failure(ctx: OperatorContext, pool: PoolObject, planned: dict, error: Exception, now: float) -> None:
    """Degraded, with what failed; the rollout state is not written, so the pass is retried whole."""
    others = [c for c in planned.get("conditions", []) if c["type"] != "Degraded"]
    degraded = merge_conditions(
        pool.status.get("conditions"), [Condition("Degraded", True, "ApplyFailed", str(error)[:1000])], now
    )
    status = {"phase": "Degraded", "conditions": others + degraded, "observedGeneration": pool.generation}
    try:
        await ctx.kube.merge_patch(
            MODELPOOLS, pool.ref.namespace, pool.ref.name, {"status": status}, subresource="status"
        )
    except Exception:  # the API itself may be what failed; the retry reports it
        log.exception("could not report the failure in status of %s/%s", pool.ref.namespace, pool.ref.name)


async def forget_pool(ctx: OperatorContext, namespace: str, name: str, uid: str) -> None:
    """The pool is being deleted: its route goes (children go by ownerReference cascade)."""
    router_pool = PoolRef(name, namespace, uid).router_pool
    await ctx.weight_steps.cancel(router_pool)
    await ctx.routers.delete_route(router_pool)
    ctx.metrics.forget(router_pool)
    ctx.scale_histories.pop(router_pool, None)
    ctx.locks.pop(f"{namespace}/{name}", None)
