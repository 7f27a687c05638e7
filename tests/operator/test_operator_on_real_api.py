"""`shoal operator` against the real control plane (kube-apiserver, the controller manager's
Deployment, ReplicaSet and garbage-collector controllers, the scheduler), logged in with its
ServiceAccount's token and nothing more (crds/rbac.yaml). Its pods are bound by the scheduler to
the fake node, which runs a fake runtime for each; a real router in front of them takes the
routes the operator pushes.

Apply a ModelPool: its Deployment, Service and route appear. Change the revision: the canary steps
and is promoted on good traffic. Roll a failing revision: the router's verdict makes the operator
abort. Delete the pool: the garbage collector takes its children, and the route goes.
"""

import pytest

from tests.operator.harness import (
    POOL,
    admin_url,
    deployment_names,
    failing,
    modelpool,
    pool_status,
    pools,
    running_operator,
    send,
    services,
)
from tests.support.operator_account import token
from tests.support.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def test_modelpool_lifecycle_on_the_real_api(operator_rbac, namespace, api, router, tmp_path):
    operator = token(operator_rbac, tmp_path / "operator.kubeconfig")
    async with running_operator(
        operator.kubeconfig, admin_url(router), tmp_path / "operator.log", namespaces=[namespace]
    ):
        pool = await api.create(pools(namespace), modelpool("v1"))
        status = await eventually(
            lambda: pool_status(api, namespace), lambda s: s.get("phase") == "Ready", timeout=30, what="pool Ready"
        )
        stable = status["stableRevision"]
        assert stable.startswith("v1-") and status["readyReplicas"] == 2
        pool = await api.get(pools(namespace, POOL))
        assert status["observedGeneration"] == pool["metadata"]["generation"]
        (deployment,) = await api.list(f"/apis/apps/v1/namespaces/{namespace}/deployments")
        assert deployment["metadata"]["name"] == f"chat-{stable}" and deployment["spec"]["replicas"] == 2
        assert deployment["metadata"]["ownerReferences"][0]["uid"] == pool["metadata"]["uid"]
        assert [s["metadata"]["name"] for s in await api.list(services(namespace))] == ["chat"]
        route = router.pools[f"{namespace}.chat"]
        assert route.rollout.split.stable == stable
        assert await send(router, 4) == {f"ok:{stable}": 4}

        # A good revision: canary at 50%, samples, promoted; the old Deployment drains and goes.
        await api.merge_patch(pools(namespace, POOL), {"spec": {"model": {"revision": "v2"}}})
        status = await eventually(
            lambda: pool_status(api, namespace), lambda s: s.get("canaryWeight") == 50, timeout=30, what="canary at 50%"
        )
        canary = status["canaryRevision"]
        assert canary.startswith("v2-") and status["phase"] == "Progressing"

        async def after_traffic() -> dict:
            await send(router, 4)
            return await pool_status(api, namespace)

        status = await eventually(
            after_traffic, lambda s: s.get("stableRevision") == canary, timeout=30, what="v2 promoted"
        )
        assert "canaryRevision" not in status and status["canaryWeight"] == 0
        await eventually(
            lambda: deployment_names(api, namespace),
            lambda names: names == [f"chat-{canary}"],
            timeout=30,
            what="old Deployment deleted after the drain",
        )

        # A failing revision: the router pulls it back; the operator aborts and says why.
        await api.merge_patch(pools(namespace, POOL), {"spec": failing("v3")["spec"]})
        outcomes: dict[str, int] = {}

        async def while_failing() -> dict:
            for key, n in (await send(router, 4)).items():
                outcomes[key] = outcomes.get(key, 0) + n
            return await pool_status(api, namespace)

        status = await eventually(
            while_failing, lambda s: s.get("phase") == "RolledBack", timeout=45, what="automatic rollback"
        )
        bad = status["rolledBackRevision"]
        assert bad.startswith("v3-") and status["stableRevision"] == canary and "canaryRevision" not in status
        assert "error_rate" in status["lastRollback"]["reason"]
        condition = next(c for c in status["conditions"] if c["type"] == "RolledBack")
        assert condition["status"] == "True" and "error_rate" in condition["message"]
        assert outcomes.get(f"failed:{canary}", 0) == 0  # clients routed to stable saw no failure
        assert outcomes.get(f"failed:{bad}", 0) >= 1
        assert router.pools[f"{namespace}.chat"].rollout.split.canary_weight == 0

        # Deleted: the finalizer lets the operator take the route; the garbage collector takes the
        # Deployments (and so the pods) and the Service by their ownerReferences.
        await api.delete(pools(namespace, POOL))

        async def what_is_left() -> tuple:
            pods = await api.list(f"/api/v1/namespaces/{namespace}/pods")
            return (
                await deployment_names(api, namespace),
                await api.list(services(namespace)),
                pods,
                f"{namespace}.chat" in router.pools,
            )

        await eventually(
            what_is_left, lambda left: left == ([], [], [], False), timeout=30, what="children, pods and route gone"
        )
