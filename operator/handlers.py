"""The kopf handlers, and nothing else: each one triggers a reconcile pass (reconcile_pass.py).

Every trigger leads to the same level-based pass (read everything, compute, apply the
difference), so a missed or repeated event costs nothing: the timer catches up.
"""

import logging

import kopf

from shoal.operator.kube_api import login
from shoal.operator.reconcile_pass import OperatorContext, forget_pool, reconcile_pool

RESOURCE = ("shoal.dev", "v1alpha1", "modelpools")
FINALIZER = "shoal.dev/route-cleanup"


def build_registry(ctx: OperatorContext) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def credentials(settings: kopf.OperatorSettings, **_) -> kopf.ConnectionInfo:
        return login(settings)  # the same as the operator's own API client uses

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.posting.level = logging.INFO  # INFO and above become Kubernetes Events
        settings.watching.server_timeout = 300

    async def trigger(namespace: str, name: str, **_) -> None:
        await reconcile_pool(ctx, namespace, name)

    kopf.on.resume(*RESOURCE, id="resume", registry=registry)(trigger)
    kopf.on.create(*RESOURCE, id="create", registry=registry)(trigger)
    kopf.on.update(*RESOURCE, id="spec-changed", field="spec", registry=registry)(trigger)
    kopf.on.field(*RESOURCE, id="annotations-changed", field="metadata.annotations", registry=registry)(trigger)
    kopf.timer(*RESOURCE, id="every-interval", interval=ctx.config.reconcile_interval_s, registry=registry)(trigger)

    @kopf.on.delete(*RESOURCE, registry=registry)
    async def deleted(namespace: str, name: str, uid: str, **_) -> None:
        await forget_pool(ctx, namespace, name, uid)

    return registry
