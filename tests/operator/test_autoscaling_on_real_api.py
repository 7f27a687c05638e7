"""The autoscaler against the real control plane, as `shoal operator` logged in with its
ServiceAccount: it owns spec.replicas and writes it through the pool's scale subresource (the
RBAC it needs is crds/rbac.yaml's), the Deployment follows, and the pool says why, in
status.autoscaling, the AutoscalingActive condition and an Event. First by the bounds, which need
no figures.

On the router's figures (its GET .../load, from the real router in the test's loop): an idle pool
goes to zero, and a request the router holds for it brings a replica back, which answers it; a
request for a pool at zero that nothing scales up gets a 503 with Retry-After once the pool's
coldStart wait is over.
"""

import asyncio
import time

import aiohttp
import pytest

from tests.operator.harness import (
    POOL,
    admin_url,
    deployments,
    modelpool,
    pool_status,
    pools,
    running_operator,
    send,
)
from tests.support.operator_account import token
from tests.support.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def test_the_autoscaler_owns_the_replicas_through_the_scale_subresource(
    operator_rbac, namespace, api, router, tmp_path
):
    operator = token(operator_rbac, tmp_path / "operator.kubeconfig")
    async with running_operator(
        operator.kubeconfig, admin_url(router), tmp_path / "operator.log", namespaces=[namespace]
    ):
        manifest = modelpool("v1", replicas=3)
        manifest["spec"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": 2}
        await api.create(pools(namespace), manifest)
        status = await eventually(
            lambda: pool_status(api, namespace),
            lambda s: s.get("phase") == "Ready" and s.get("readyReplicas") == 2,
            timeout=30,
            what="pool Ready at maxReplicas",
        )
        pool = await api.get(pools(namespace, POOL))
        assert pool["spec"]["replicas"] == 2
        (deployment,) = await api.list(deployments(namespace))
        assert deployment["spec"]["replicas"] == 2
        assert status["autoscaling"]["desiredReplicas"] == 2 and status["autoscaling"]["lastScaleTime"]
        assert "AutoscalingActive" in {c["type"] for c in status["conditions"]}
        events = await api.list(f"/api/v1/namespaces/{namespace}/events", field_selector=f"involvedObject.name={POOL}")
        (scaled,) = [e for e in events if e["reason"] == "ScaledDown"]
        assert scaled["message"] == "replicas 3 -> 2: spec.replicas 3 is outside [1, 2]"

        # Someone scales it by hand (kubectl scale, another autoscaler): the autoscaler takes it back.
        scale = f"{pools(namespace, POOL)}/scale"
        await api.merge_patch(scale, {"spec": {"replicas": 5}})
        await eventually(
            lambda: api.get(scale), lambda s: s["spec"]["replicas"] == 2, timeout=30, what="replicas back to 2"
        )

        # Without autoscaling, spec.replicas is the user's again, and the status forgets it.
        await api.merge_patch(pools(namespace, POOL), {"spec": {"autoscaling": None, "replicas": 1}})
        status = await eventually(
            lambda: pool_status(api, namespace),
            lambda s: "autoscaling" not in s and s.get("readyReplicas") == 1,
            timeout=30,
            what="autoscaling gone",
        )
        assert "AutoscalingActive" not in {c["type"] for c in status["conditions"]}
        assert (await api.get(pools(namespace, POOL)))["spec"]["replicas"] == 1


async def test_an_idle_pool_scales_to_zero_and_a_held_request_brings_it_back(
    operator_rbac, namespace, api, router, tmp_path
):
    operator = token(operator_rbac, tmp_path / "operator.kubeconfig")
    async with running_operator(
        operator.kubeconfig, admin_url(router), tmp_path / "operator.log", namespaces=[namespace]
    ):
        manifest = modelpool("v1", replicas=1)
        manifest["spec"]["autoscaling"] = {
            "minReplicas": 0,
            "maxReplicas": 2,
            "metrics": [{"type": "waitingPerReplica", "target": 2}],
            "scaleToZeroAfterSeconds": 2,
        }
        await api.create(pools(namespace), manifest)
        status = await eventually(
            lambda: pool_status(api, namespace),
            lambda s: (s.get("autoscaling") or {}).get("desiredReplicas") == 0,
            timeout=30,
            what="idle pool scaled to zero",
        )
        active = next(c for c in status["conditions"] if c["type"] == "AutoscalingActive")
        assert (active["status"], active["reason"]) == ("True", "Idle")
        assert (await api.get(pools(namespace, POOL)))["spec"]["replicas"] == 0
        # Gone, not going: a request sent while the last runtime stops would be the router's
        # draining story, not this one.
        await eventually(
            lambda: api.list(f"/api/v1/namespaces/{namespace}/pods"), lambda pods: not pods, timeout=30, what="no pod"
        )

        answered = asyncio.create_task(send(router, 1))  # held by the router: no replica to take it
        status = await eventually(
            lambda: pool_status(api, namespace),
            lambda s: s["autoscaling"]["desiredReplicas"] == 1,
            timeout=30,
            what="a replica for the held request",
        )
        assert await asyncio.wait_for(answered, timeout=60) == {f"ok:{status['stableRevision']}": 1}
        events = await api.list(f"/api/v1/namespaces/{namespace}/events", field_selector=f"involvedObject.name={POOL}")
        scaled = [(e["reason"], e["message"]) for e in events if e["reason"] in ("ScaledUp", "ScaledDown")]
        assert ("ScaledUp", "replicas 0 -> 1: 1 requests held or waiting with no replica") in scaled
        assert any(
            reason == "ScaledDown" and message.startswith("replicas 1 -> 0: no request for")
            for reason, message in scaled
        )


async def test_a_request_held_past_the_pools_cold_start_wait_gets_503_with_retry_after(
    operator_rbac, namespace, api, router, tmp_path
):
    """A pool at zero that nothing scales up: the router holds the request for coldStart's
    maxWaitSeconds, then answers 503 with a Retry-After; the request is not left hanging."""
    operator = token(operator_rbac, tmp_path / "operator.kubeconfig")
    async with running_operator(
        operator.kubeconfig, admin_url(router), tmp_path / "operator.log", namespaces=[namespace]
    ):
        manifest = modelpool("v1", replicas=0)
        manifest["spec"]["coldStart"] = {"maxWaitSeconds": 1}
        await api.create(pools(namespace), manifest)
        url = f"http://127.0.0.1:{router.http_port}/v1/chat/completions"
        body = {"model": POOL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer sk-test-quiet"}) as session:

            async def post() -> tuple[int, float, dict, dict]:
                started = time.monotonic()
                async with session.post(url, json=body) as response:
                    return response.status, time.monotonic() - started, dict(response.headers), await response.json()

            status, waited, headers, answer = await eventually(
                post, lambda result: result[0] != 404, timeout=30, what="the pool's route at the router"
            )
        assert status == 503 and waited >= 1.0, (status, waited, answer)
        assert int(headers["Retry-After"]) >= 1
        assert answer["error"]["code"] == "service_unavailable" and "within 1s" in answer["error"]["message"]
