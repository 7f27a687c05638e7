"""Applies a Plan (plan.py): only the differences, in an order that never strands a request.

The autoscaler's replicas first, through the pool's scale subresource (spec.replicas is the record
the next pass starts from; the Deployments below follow it). Children next (a route must not name
endpoints of a Deployment not yet asked for), then the route (weights move before anything is
taken away), then deletions of what no revision needs. The runtimes' admin token comes before all
of them: the pods mount it.
"""

import base64
import secrets

from shoal.operator.children import ADMIN_TOKEN_KEY, PoolRef, admin_secret_name, desired_admin_secret
from shoal.operator.kube_api import DEPLOYMENTS, MODELPOOLS, SECRETS, SERVICES, KubeApi
from shoal.operator.plan import TEMPLATE_HASH_ANNOTATION, Plan
from shoal.operator.router_client import RouterClient


async def apply_plan(kube: KubeApi, routers: RouterClient, pool: PoolRef, plan: Plan, deployments: list[dict]) -> None:
    if plan.scale is not None:
        scale = {"spec": {"replicas": plan.scale}}
        await kube.merge_patch(MODELPOOLS, pool.namespace, pool.name, scale, subresource="scale")
    current = {d["metadata"]["name"]: d for d in deployments}
    for name, desired in plan.deployments.items():
        existing = current.get(name)
        if existing is None:
            await kube.create(DEPLOYMENTS, pool.namespace, desired)
        elif needs_update(existing, desired):
            await kube.merge_patch(
                DEPLOYMENTS,
                pool.namespace,
                name,
                {
                    "metadata": {
                        "labels": desired["metadata"]["labels"],
                        "annotations": desired["metadata"]["annotations"],
                    },
                    "spec": desired["spec"],
                },
            )
    if plan.service is not None and await kube.get(SERVICES, pool.namespace, plan.service["metadata"]["name"]) is None:
        await kube.create(SERVICES, pool.namespace, plan.service)
    if plan.reset_verdict is not None:
        await routers.reset_verdict(pool.router_pool, plan.reset_verdict)
    if plan.route is not None:
        await routers.put_route(pool.router_pool, plan.route)
    for name in plan.delete_deployments:
        await kube.delete(DEPLOYMENTS, pool.namespace, name)


async def ensure_admin_secret(kube: KubeApi, pool: PoolRef) -> str:
    """The pool's runtime admin token: read, or made (random, owned by the pool) the first time."""
    secret = await kube.get(SECRETS, pool.namespace, admin_secret_name(pool))
    if secret is None:
        secret = await kube.create(SECRETS, pool.namespace, desired_admin_secret(pool, secrets.token_urlsafe(32)))
    return base64.b64decode(secret["data"][ADMIN_TOKEN_KEY]).decode()


def needs_update(existing: dict, desired: dict) -> bool:
    annotations = existing["metadata"].get("annotations") or {}
    return (
        existing.get("spec", {}).get("replicas") != desired["spec"]["replicas"]
        or annotations.get(TEMPLATE_HASH_ANNOTATION) != desired["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION]
    )
