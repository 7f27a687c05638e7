"""Least privilege, both ways, from the API server's audit log: every permission crds/rbac.yaml
grants the operator is used by some step of a pool's life (else it goes from the role), every
request the operator makes is one the role allows (a 403 names the request); and a verb missing
from the role shows up as a failing pool, not as silence."""

import asyncio

import pytest

from tests.operator.harness import (
    POOL,
    LeaderElection,
    admin_url,
    deployment_names,
    modelpool,
    pool_status,
    pools,
    running_operator,
    send,
)
from tests.support.operator_account import account_without, delete_account, granted, requests_of, token
from tests.support.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def a_pools_life(api, router, namespace: str, name: str = POOL) -> None:
    """Created, Ready, rolled to a new revision and promoted (the old Deployment deleted), autoscaled
    (its replicas brought within maxReplicas through the scale subresource), deleted. The scaling
    comes after the rollout so that a stable pod being removed does not overlap the canary's start."""
    await api.create(pools(namespace), modelpool("v1", name=name))
    await eventually(
        lambda: pool_status(api, namespace, name), lambda s: s.get("phase") == "Ready", timeout=30, what=f"{name} Ready"
    )
    await api.merge_patch(pools(namespace, name), {"spec": {"model": {"revision": "v2"}}})

    async def after_traffic() -> dict:
        await send(router, 4, model=name)
        return await pool_status(api, namespace, name)

    status = await eventually(
        after_traffic,
        lambda s: (s.get("stableRevision") or "").startswith("v2-") and not s.get("retiring"),
        timeout=30,
        what=f"{name} promoted, old revision retired",
    )
    await eventually(
        lambda: deployment_names(api, namespace),
        lambda names: names == [f"{name}-{status['stableRevision']}"],
        timeout=30,
        what="old Deployment deleted",
    )
    await api.merge_patch(pools(namespace, name), {"spec": {"autoscaling": {"maxReplicas": 1}}})
    await eventually(
        lambda: api.get(pools(namespace, name)),
        lambda pool: pool["spec"]["replicas"] == 1,
        timeout=30,
        what=f"{name} scaled to its maxReplicas",
    )
    await api.delete(pools(namespace, name))
    await eventually(
        lambda: api.list(pools(namespace)),
        lambda left: not left,
        timeout=30,
        what=f"{name} deleted (finalizer removed)",
    )


async def test_the_role_grants_exactly_what_the_operator_uses(operator_rbac, namespace, api, router, tmp_path):
    plane = operator_rbac
    # Watching some namespaces (kopf then lists and watches Namespaces), with leader election on:
    # the Lease read, created, renewed, and released on SIGTERM.
    namespaced = token(plane, tmp_path / "namespaced.kubeconfig")
    election = LeaderElection(f"rbac-{namespace}")
    async with running_operator(
        namespaced.kubeconfig,
        admin_url(router),
        tmp_path / "namespaced.log",
        namespaces=[namespace],
        leader_election=election,
    ):
        await a_pools_life(api, router, namespace)
    # Watching every namespace, as the chart installs it by default.
    clusterwide = token(plane, tmp_path / "clusterwide.kubeconfig")
    async with running_operator(clusterwide.kubeconfig, admin_url(router), tmp_path / "clusterwide.log"):
        await a_pools_life(api, router, namespace, name="everywhere")

    # A watch is audited when it ends: both operators have stopped, so every request is in.
    await asyncio.sleep(1)
    requests = requests_of(plane, namespaced) + requests_of(plane, clusterwide)
    # The cluster-wide operator also meets pools of earlier tests whose namespaces are still being
    # deleted; there the API server refuses new content to anyone (403, NamespaceTerminating), so
    # only this test's namespaces, and requests outside any namespace, say what the role allows.
    ours = (f"/namespaces/{namespace}/", "/namespaces/shoal-system/")
    forbidden = [
        f"{r.verb} {r.uri}"
        for r in requests
        if r.code == 403 and ("/namespaces/" not in r.uri or any(n in r.uri for n in ours))
    ]
    assert not forbidden, f"the operator was refused: {forbidden}"
    used = {r.permission for r in requests if r.resource}  # discovery (/api, /apis, /version) is anyone's
    role = granted()
    assert used <= role, f"used but not granted: {sorted(used - role)}"
    assert role <= used, f"granted but never used (drop them from crds/rbac.yaml and the chart): {sorted(role - used)}"


async def test_a_verb_missing_from_the_role_fails_the_pool_visibly(operator_rbac, namespace, api, router, tmp_path):
    plane, account = operator_rbac, "shoal-operator-no-create"
    account_without(plane, account, "apps", "deployments", "create")
    try:
        restricted = token(plane, tmp_path / "restricted.kubeconfig", account)
        async with running_operator(
            restricted.kubeconfig, admin_url(router), tmp_path / "operator.log", namespaces=[namespace]
        ):
            await api.create(pools(namespace), modelpool("v1"))

            def degraded(status: dict) -> bool:
                return any(c["type"] == "Degraded" and c["status"] == "True" for c in status.get("conditions") or ())

            status = await eventually(lambda: pool_status(api, namespace), degraded, timeout=30, what="pool Degraded")
            condition = next(c for c in status["conditions"] if c["type"] == "Degraded")
            assert status["phase"] == "Degraded" and condition["reason"] == "ApplyFailed"
            assert (
                "deployments" in condition["message"]
                and "403" in condition["message"]
                and "forbidden" in condition["message"]
            )
            await asyncio.sleep(1)  # more passes: still refused, nothing made
            assert await deployment_names(api, namespace) == []
            refused = [r for r in requests_of(plane, restricted) if r.code == 403]
            assert refused and {r.permission for r in refused} == {("apps", "deployments", "create")}
            await api.delete(pools(namespace, POOL))
    finally:
        delete_account(plane, account)
