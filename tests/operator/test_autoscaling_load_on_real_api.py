"""The autoscaler under load, on the real control plane: requests streamed through the real router
(in the test's loop) grow an autoscaled pool from 1 replica to its maxReplicas 3, and once they stop
it comes back to 1; no request of the load fails meanwhile. `shoal operator` runs as its own
process, logged in with its ServiceAccount, and sizes the pool from the router's GET .../load.

The load is real queueing, not figures set by the test: each pod's fake runtime runs as many
requests at once as its --max-num-seqs (the pool's spec.runtime.maxNumSeqs, 4 here) and makes the
others wait, at SPEED_FLAG's seconds a token, and its /metrics say so, as a runtime's do
(num_requests_waiting; kv_cache_usage_perc, each running request holding a quarter of the cache:
fake_node.py, tests/router/fake_runtime.py). Eight clients each stream one request after another,
so one replica runs 4 and queues 4: both signals ask for more. At three replicas the 8 requests fill
8 of 12 places, a KV usage of about 0.67 against a target of 0.5, which would take 4: the pool holds
at maxReplicas. When the clients stop, the usage falls to 0; kvCacheUsage is the signal that scales
down too (the queue only pushes up), so after the 3 s scale-down window the pool is back at 1.

Not here: requests in flight on a replica as it goes (the fake node stops a deleted pod's runtime at
once, where a kubelet gives it its grace period to drain); a request held past cold_start.max_wait_s
(503 with Retry-After: tests/router/test_scale_from_zero.py; the operator pushes the router's default
wait, 120 s, with no field of the pool to shorten it).
"""

import asyncio
import re

import openai
import pytest

from tests.operator.fake_node import SPEED_FLAG
from tests.operator.harness import POOL, admin_url, modelpool, pool_status, pools, running_operator, send
from tests.support.api_client import ApiClient
from tests.support.operator_account import token
from tests.support.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

CLIENTS = 8
BATCH = 4  # spec.runtime.maxNumSeqs: requests one replica runs at once
TOKENS = 20
TOKEN_DELAY_S = 0.05  # about 1 s a request
EVENT = re.compile(r"replicas (\d+) -> (\d+): (kvCacheUsage|waitingPerReplica) \S+ \(target \S+\) recommends \d+")


def autoscaled_pool() -> dict:
    manifest = modelpool("v1", replicas=1, args=(SPEED_FLAG, str(TOKEN_DELAY_S)))
    manifest["spec"]["runtime"]["maxNumSeqs"] = BATCH
    manifest["spec"]["autoscaling"] = {
        "minReplicas": 1,
        "maxReplicas": 3,
        "metrics": [{"type": "kvCacheUsage", "target": 0.5}, {"type": "waitingPerReplica", "target": 1}],
        "behavior": {
            "scaleUp": {"stabilizationWindowSeconds": 0, "periodSeconds": 1},
            "scaleDown": {"stabilizationWindowSeconds": 3, "periodSeconds": 1},
        },
    }
    return manifest


async def stream_until(stop: asyncio.Event, client: openai.AsyncOpenAI, outcomes: list[str]) -> None:
    """One client: streamed chat completions one after another until `stop`; the one under way
    when it is set is finished, not dropped. Each outcome: "ok" (streamed to its end) or what failed."""
    while not stop.is_set():
        try:
            stream = await client.chat.completions.create(
                model=POOL, messages=[{"role": "user", "content": "hi"}], max_tokens=TOKENS, stream=True
            )
            finish = [choice.finish_reason async for chunk in stream for choice in chunk.choices]
            outcomes.append("ok" if finish[-1:] == ["length"] else f"cut short: {finish[-3:]}")
        except openai.APIStatusError as error:
            outcomes.append(f"HTTP {error.status_code}: {error.message}")
        except openai.APIError as error:  # the stream broke off
            outcomes.append(f"{type(error).__name__}: {error}")


async def scale_events(api: ApiClient, namespace: str) -> dict[str, list[tuple[int, int, str]]]:
    """The pool's ScaledUp and ScaledDown Events as (replicas before, after, deciding signal)."""
    events = await api.list(f"/api/v1/namespaces/{namespace}/events", field_selector=f"involvedObject.name={POOL}")
    scaled: dict[str, list[tuple[int, int, str]]] = {"ScaledUp": [], "ScaledDown": []}
    for event in events:
        if event["reason"] in scaled:
            match = EVENT.match(event["message"])
            assert match, event["message"]
            scaled[event["reason"]].append((int(match[1]), int(match[2]), match[3]))
    return scaled


async def pool_at(api: ApiClient, namespace: str) -> dict:
    """spec.replicas through the scale subresource, and the status."""
    scale = await api.get(f"{pools(namespace, POOL)}/scale")
    return {"replicas": scale["spec"]["replicas"], **await pool_status(api, namespace)}


def autoscaling_active(status: dict) -> dict:
    return next(c for c in status.get("conditions") or () if c["type"] == "AutoscalingActive")


def recommended(seen: dict, signal: str) -> int | None:
    readings = {m["type"]: m for m in (seen.get("autoscaling") or {}).get("metrics") or ()}
    return readings.get(signal, {}).get("recommendedReplicas")


def ready_at(replicas: int, reason: str, kv_recommends=lambda replicas: True):
    """spec.replicas, the replicas the autoscaler wants and the ready ones all at `replicas`, for
    `reason`, the KV usage recommending what `kv_recommends` accepts."""

    def accept(seen: dict) -> bool:
        autoscaling = seen.get("autoscaling") or {}
        return (
            seen["replicas"] == autoscaling.get("desiredReplicas") == autoscaling.get("readyReplicas") == replicas
            and seen.get("readyReplicas") == replicas
            and autoscaling_active(seen)["reason"] == reason
            and kv_recommends(recommended(seen, "kvCacheUsage"))
        )

    return accept


async def test_load_through_the_router_scales_the_pool_up_to_max_and_back(
    operator_rbac, namespace, api, router, tmp_path
):
    operator = token(operator_rbac, tmp_path / "operator.kubeconfig")
    async with running_operator(
        operator.kubeconfig, admin_url(router), tmp_path / "operator.log", namespaces=[namespace]
    ):
        await api.create(pools(namespace), autoscaled_pool())
        await eventually(
            lambda: pool_at(api, namespace), ready_at(1, "WithinTarget"), timeout=30, what="an idle pool at 1"
        )

        stop, outcomes = asyncio.Event(), []
        client = openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{router.http_port}/v1", api_key="sk-test-quiet", max_retries=0
        )
        clients = [asyncio.create_task(stream_until(stop, client, outcomes)) for _ in range(CLIENTS)]
        seen: list[dict] = []

        async def read() -> dict:
            seen.append(await pool_at(api, namespace))
            return seen[-1]

        try:
            # Once the load has spread over the three, the KV usage alone asks for more than 3.
            at_max = ready_at(3, "AtMaxReplicas", lambda kv: kv is not None and kv > 3)
            peak = await eventually(read, at_max, timeout=30, what="3 replicas under load")
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*clients), timeout=30)
            await client.close()
        assert outcomes and set(outcomes) == {"ok"}, outcomes  # none lost while the pool grew
        assert autoscaling_active(peak)["message"].endswith("; 3 at most")
        # The requests did wait on one replica: the operator saw the runtimes' queue.
        assert any(recommended(s, "waitingPerReplica") for s in seen)

        back = await eventually(
            lambda: pool_at(api, namespace), ready_at(1, "WithinTarget"), timeout=30, what="back to 1 without load"
        )
        assert back["autoscaling"]["lastScaleTime"] > peak["autoscaling"]["lastScaleTime"]
        await eventually(
            lambda: api.list(f"/api/v1/namespaces/{namespace}/pods"),
            lambda pods: len(pods) == 1,
            timeout=30,
            what="the replicas scaled away gone",
        )
        assert await send(router, 2) == {f"ok:{back['stableRevision']}": 2}

        # Every change is an Event that names the signal that asked for it: up by 2 and down by 2 in
        # all, so the pool never went back and forth on the way; down on the KV usage, the one signal
        # that may shrink a pool.
        scaled = await eventually(
            lambda: scale_events(api, namespace), lambda e: e["ScaledDown"], timeout=10, what="a ScaledDown event"
        )
        assert all(a < b <= 3 for a, b, _ in scaled["ScaledUp"]), scaled
        assert all(a > b >= 1 and signal == "kvCacheUsage" for a, b, signal in scaled["ScaledDown"]), scaled
        assert sum(b - a for a, b, _ in scaled["ScaledUp"]) == 2 == sum(a - b for a, b, _ in scaled["ScaledDown"])
