"""The operator on the real API when things break under it: killed mid-rollout (a new one carries on
from the pool's status), and the API server restarted under it (its watches resume)."""

import asyncio
import time
from collections import Counter

import pytest

from tests.operator.harness import (
    POOL,
    admin_url,
    deployment_names,
    deployments,
    modelpool,
    pool_status,
    pools,
    running_operator,
    send,
)
from tests.support.operator_account import token
from tests.support.polling import eventually
from tests.support.status_history import StatusHistory

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def pool_events(api, namespace: str) -> Counter:
    """How many Events of each reason the pool got."""
    events = await api.list(f"/api/v1/namespaces/{namespace}/events", field_selector=f"involvedObject.name={POOL}")
    return Counter(e["reason"] for e in events)


def rollout_path(history: list[dict]) -> list[tuple]:
    """(stable, canary, step, weight) each time one of them changed."""
    path: list[tuple] = []
    for status in history:
        point = (
            status.get("stableRevision"),
            status.get("canaryRevision"),
            status.get("currentStep"),
            status.get("canaryWeight"),
        )
        if point[0] and (not path or path[-1] != point):
            path.append(point)
    return path


async def test_a_rollout_carries_on_from_status_after_the_operator_is_killed(
    operator_rbac, namespace, api, router, tmp_path
):
    kubeconfig = token(operator_rbac, tmp_path / "operator.kubeconfig").kubeconfig
    history = StatusHistory()
    following = asyncio.create_task(history.follow(api, pools(namespace)))
    seen_deployments: set[tuple[str, ...]] = set()

    async def traffic_and_deployments() -> dict:
        await send(router, 4)
        seen_deployments.add(tuple(await deployment_names(api, namespace)))
        return await pool_status(api, namespace)

    try:
        async with running_operator(
            kubeconfig, admin_url(router), tmp_path / "first.log", namespaces=[namespace]
        ) as first:
            await api.create(pools(namespace), modelpool("v1", steps=((25, "4s"), (50, "1s")), min_samples=3))
            status = await eventually(
                lambda: pool_status(api, namespace), lambda s: s.get("phase") == "Ready", timeout=30, what="pool Ready"
            )
            stable = status["stableRevision"]
            await api.merge_patch(pools(namespace, POOL), {"spec": {"model": {"revision": "v2"}}})
            at_step = await eventually(
                traffic_and_deployments,
                lambda s: s.get("canaryWeight") == 25,
                timeout=30,
                what="canary at its first step",
            )
            await eventually(
                lambda: pool_events(api, namespace),
                lambda reasons: "CanaryStep" in reasons,
                timeout=10,
                what="the step's event",
            )
            await first.kill()  # mid-pause: the step's clock runs in status, not in the process

        await asyncio.sleep(1.0)
        assert await pool_status(api, namespace) == at_step  # nobody acts meanwhile
        canary = at_step["canaryRevision"]
        async with running_operator(kubeconfig, admin_url(router), tmp_path / "second.log", namespaces=[namespace]):
            status = await eventually(
                traffic_and_deployments,
                lambda s: s.get("stableRevision") == canary,
                timeout=40,
                what="promoted by the new operator",
            )
            await eventually(
                lambda: deployment_names(api, namespace),
                lambda names: names == [f"chat-{canary}"],
                timeout=30,
                what="old Deployment drained and deleted",
            )
            reasons = await pool_events(api, namespace)
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)

    # The step was neither restarted nor repeated: it kept the time it began, and the rollout
    # moved only forward, one step after the other.
    after_kill = [
        s
        for s in history.statuses[POOL]
        if s.get("canaryRevision") == canary and s.get("currentStep") == 0 and s.get("canaryWeight") == 25
    ]
    assert {s["stepStartedAt"] for s in after_kill} == {at_step["stepStartedAt"]}
    assert rollout_path(history.statuses[POOL]) == [
        (stable, None, None, 0),
        (stable, canary, 0, 0),
        (stable, canary, 0, 25),
        (stable, canary, 1, 50),
        (stable, canary, 2, 50),  # promoting: the canary scales to full size
        (canary, None, None, 0),
    ]
    assert (reasons["RolloutStarted"], reasons["CanaryStep"], reasons["Promoted"]) == (1, 2, 1)
    # Never a duplicate: at most the stable's and the canary's Deployment, by their revisions' names.
    assert all(set(names) <= {f"chat-{stable}", f"chat-{canary}"} for names in seen_deployments)


async def test_the_operator_resumes_its_watches_after_the_api_server_restarts(
    operator_rbac, namespace, api, router, tmp_path
):
    plane = operator_rbac
    kubeconfig = token(plane, tmp_path / "operator.kubeconfig").kubeconfig
    async with running_operator(
        kubeconfig, admin_url(router), tmp_path / "operator.log", namespaces=[namespace]
    ) as operator:
        await api.create(pools(namespace), modelpool("v1"))
        status = await eventually(
            lambda: pool_status(api, namespace), lambda s: s.get("phase") == "Ready", timeout=30, what="pool Ready"
        )
        stable = status["stableRevision"]

        await asyncio.to_thread(plane.restart_api_server)
        restarted = time.monotonic()
        # A change to a pool the operator knew, and a pool it has never seen: only a watch that
        # resumed can tell it about the second (a timer runs only for objects already known).
        await api.merge_patch(pools(namespace, POOL), {"spec": {"replicas": 3}})
        await api.create(pools(namespace), modelpool("v1", name="after-restart", replicas=1))

        def scaled(status: dict) -> bool:
            return status.get("readyReplicas") == 3 and status.get("phase") == "Ready"

        status = await eventually(lambda: pool_status(api, namespace), scaled, timeout=45, what="the change acted on")
        await eventually(
            lambda: pool_status(api, namespace, "after-restart"),
            lambda s: s.get("phase") == "Ready",
            timeout=45,
            what="the new pool Ready",
        )
        recovery_s = time.monotonic() - restarted
        print(f"acted on both changes {recovery_s:.1f}s after the API server was back")

        pool = await api.get(pools(namespace, POOL))
        assert status["stableRevision"] == stable and status["observedGeneration"] == pool["metadata"]["generation"]
        names = await deployment_names(api, namespace)
        assert (
            len(names) == 2
            and f"chat-{stable}" in names
            and all(n.startswith(("chat-", "after-restart-")) for n in names)
        )
        (deployment,) = [d for d in await api.list(deployments(namespace)) if d["metadata"]["name"] == f"chat-{stable}"]
        assert deployment["spec"]["replicas"] == 3
        assert operator.process.returncode is None  # rode it out, no restart
        assert await send(router, 3) == {f"ok:{stable}": 3}
