"""The kopf handlers, and nothing else: each one triggers a reconcile pass (reconcile.py).

Every trigger leads to the same level-based pass (read everything, compute, apply the
difference), so a missed or repeated event costs nothing: the timer catches up.
"""

import logging

import kopf

from shoal.constants import GROUP, PLURAL, VERSION
from shoal.operator.kube_api import login
from shoal.operator.reconcile import OperatorContext, forget_pool, reconcile_pool

RESOURCE = (GROUP, VERSION, PLURAL)
FINALIZER = "shoal.dev/route-cleanup"
DELETION_POLL_S = 1.0


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
        # A pool's deletion waits for its timer's pass in progress to end; kopf checks again only
        # after this long (its default, 60 s, held a deleted pool's finalizer for a minute).
        settings.background.cancellation_polling = DELETION_POLL_S

    async def trigger(namespace: str, name: str, **_) -> None:
        await reconcile_pool(ctx, namespace, name)

    # A pass that fails (the API server restarting, a router unreachable) is tried again after the
    # reconcile interval, not after kopf's default backoff of 60 s.
    retry = {"backoff": ctx.config.reconcile_interval_s, "registry": registry}
    kopf.on.resume(*RESOURCE, id="resume", **retry)(trigger)
    kopf.on.create(*RESOURCE, id="create", **retry)(trigger)
    kopf.on.update(*RESOURCE, id="spec-changed", field="spec", **retry)(trigger)
    kopf.on.field(*RESOURCE, id="annotations-changed", field="metadata.annotations", **retry)(trigger)
    kopf.timer(*RESOURCE, id="every-interval", interval=ctx.config.reconcile_interval_s, **retry)(trigger)

    @kopf.on.delete(*RESOURCE, **retry)
    async def deleted(namespace: str, name: str, uid: str, **_) -> None:
        await forget_pool(ctx, namespace, name, uid)

    return registry
