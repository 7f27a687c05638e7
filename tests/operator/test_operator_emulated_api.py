"""kopf running the real operator against the emulated API server (kmock's KubernetesEmulator,
extended in tests/support/), with a real router in front of fake runtimes standing in for the
pods' containers (a fake kubelet below starts one per pod on the pod's own loopback IP).

Apply a ModelPool: its Deployment, Service and route appear. Change the revision: the canary steps
and is promoted on good traffic. Roll a failing revision: the router's verdict makes the operator
abort. Delete the pool: children and route go.
"""

import asyncio
import contextlib
import itertools
import threading

import aiohttp
import grpc
import openai
import pytest

from shoal.operator.config import OperatorConfig
from shoal.operator.serve import run_operator
from shoal.router.app import Router
from tests.router.fake_runtime import FakeRuntime
from tests.router.harness import make_config
from tests.support.api_client import ApiClient
from tests.support.deployment_controller import run_deployment_controller
from tests.support.emulated_api import EmulatedApiServer, crd_files, serving
from tests.support.kubeconfig import write_kubeconfig

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
POOLS = "/apis/shoal.dev/v1alpha1/namespaces/default/modelpools"
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
PODS = "/api/v1/namespaces/default/pods"
SERVICES = "/api/v1/namespaces/default/services"
FAULT_FLAG = "--fault-error-rate"


def modelpool(revision: str, args: list[str] | None = None) -> dict:
    return {
        "apiVersion": "shoal.dev/v1alpha1",
        "kind": "ModelPool",
        "metadata": {"name": "chat", "namespace": "default"},
        "spec": {
            "model": {"source": "embedded", "revision": revision},
            "replicas": 2,
            "runtime": {"device": "cpu", "args": args or []},
            "resources": {"gpus": 0},
            "rollout": {"steps": [{"weight": 50, "pause": "1s"}], "analysis": {"minSamples": 6, "windowSeconds": 30}},
        },
    }


class FakeKubelet:
    """Runs each pod as a FakeRuntime on the pod's own 127.0.0.x (ports as the pod declares), failing
    every request if the container was given the fault flag; reports podIP and Ready."""

    def __init__(self, api: ApiClient):
        self.api = api
        self.running: dict[str, FakeRuntime] = {}
        self._ips = (f"127.0.0.{i}" for i in itertools.count(20))

    async def run(self) -> None:
        while True:
            pods = await self.api.list(PODS)
            live = {p["metadata"]["name"] for p in pods}
            for pod in pods:
                name = pod["metadata"]["name"]
                if name not in self.running and not pod["metadata"].get("deletionTimestamp"):
                    await self._start(pod)
            for name in set(self.running) - live:
                await self.running.pop(name).stop()
            await asyncio.sleep(0.1)

    async def _start(self, pod: dict) -> None:
        container = pod["spec"]["containers"][0]
        labels = pod["metadata"]["labels"]
        runtime = FakeRuntime(revision=labels["shoal.dev/revision"], model="chat")
        if FAULT_FLAG in container["args"]:
            runtime.error = grpc.StatusCode.INTERNAL
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        ip = next(self._ips)
        await runtime.start(ports["grpc"], ports["metrics"], host=ip)
        self.running[pod["metadata"]["name"]] = runtime
        status = {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}
        await self.api.replace_status(f"{PODS}/{pod['metadata']['name']}", status)

    async def stop(self) -> None:
        for runtime in self.running.values():
            await runtime.stop()


async def eventually(check, timeout_s: float = 30.0, what: str = ""):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or check.__name__}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def whole_setup(tmp_path, monkeypatch):
    api_server = EmulatedApiServer()
    async with serving(api_server) as url, aiohttp.ClientSession() as session:
        await api_server.create_crds(crd_files())
        client = ApiClient(session, url)
        monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", url)))
        router = Router(make_config([]))
        await router.start()
        kubelet = FakeKubelet(client)
        # kopf gets a loop of its own: when it stops, it cancels every task started on its loop
        # after it, which would include the API server's and fake runtimes' handlers.
        stop, ready = threading.Event(), threading.Event()
        config = OperatorConfig(router_admin_urls=(f"http://127.0.0.1:{router.admin_port}",), reconcile_interval_s=0.3, drain_s=1.0)  # fmt: skip
        tasks = [
            asyncio.create_task(run_deployment_controller(client, interval=0.1)),
            asyncio.create_task(kubelet.run()),
        ]
        operator = threading.Thread(target=lambda: asyncio.run(run_operator(config, stop, ready)), name="operator")
        operator.start()
        try:
            assert await asyncio.to_thread(ready.wait, 30), "the operator did not start"
            yield client, router, kubelet
        finally:
            stop.set()
            await asyncio.to_thread(operator.join, 30)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await kubelet.stop()
            await router.stop(grace_s=0)


async def send(router: Router, n: int) -> dict[str, int]:
    """n chat completions through the router; outcomes by the revision that answered."""
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{router.http_port}/v1", api_key="sk-test-quiet", max_retries=0)
    outcomes: dict[str, int] = {}
    for _ in range(n):
        try:
            raw = await client.chat.completions.with_raw_response.create(model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=2)  # fmt: skip
            key = "ok:" + raw.headers["x-shoal-revision"]
        except openai.APIStatusError as error:
            key = "failed:" + error.response.headers.get("x-shoal-revision", "?")
        outcomes[key] = outcomes.get(key, 0) + 1
    await client.close()
    return outcomes


async def test_modelpool_lifecycle_on_the_emulated_api(tmp_path, monkeypatch):
    async with whole_setup(tmp_path, monkeypatch) as (api, router, kubelet):
        await api.create(POOLS, modelpool("v1"))

        async def pool_ready():
            pool = await api.get(f"{POOLS}/chat")
            return pool if (pool.get("status") or {}).get("phase") == "Ready" else None

        pool = await eventually(pool_ready, what="pool Ready")
        stable = pool["status"]["stableRevision"]
        assert stable.startswith("v1-") and pool["status"]["readyReplicas"] == 2
        assert pool["status"]["observedGeneration"] == pool["metadata"]["generation"]
        (deployment,) = await api.list(DEPLOYMENTS)
        assert deployment["metadata"]["name"] == f"chat-{stable}" and deployment["spec"]["replicas"] == 2
        assert deployment["metadata"]["ownerReferences"][0]["uid"] == pool["metadata"]["uid"]
        assert [s["metadata"]["name"] for s in await api.list(SERVICES)] == ["chat"]
        route = router.pools["default.chat"]
        assert route.rollout.split.stable == stable
        assert await send(router, 4) == {f"ok:{stable}": 4}

        # a good revision: canary at 50%, samples, promoted; the old Deployment drains and goes
        await api.merge_patch(f"{POOLS}/chat", {"spec": {"model": {"revision": "v2"}}})

        async def canary_weighted():
            status = (await api.get(f"{POOLS}/chat")).get("status") or {}
            return status if status.get("canaryWeight") == 50 else None

        status = await eventually(canary_weighted, what="canary at 50%")
        canary = status["canaryRevision"]
        assert canary.startswith("v2-") and status["phase"] == "Progressing"

        async def promoted():
            await send(router, 4)
            status = (await api.get(f"{POOLS}/chat")).get("status") or {}
            return status if status.get("stableRevision") == canary else None

        status = await eventually(promoted, what="v2 promoted")
        assert "canaryRevision" not in status and status["canaryWeight"] == 0

        async def old_gone():
            return [d["metadata"]["name"] for d in await api.list(DEPLOYMENTS)] == [f"chat-{canary}"]

        await eventually(old_gone, what="old stable Deployment deleted after drain")

        # a failing revision: the router pulls it back; the operator aborts and says why
        await api.merge_patch(f"{POOLS}/chat", {"spec": {"model": {"revision": "v3"}, "runtime": {"args": [FAULT_FLAG, "1.0"]}}})  # fmt: skip
        outcomes: dict[str, int] = {}

        async def rolled_back():
            for key, n in (await send(router, 4)).items():
                outcomes[key] = outcomes.get(key, 0) + n
            status = (await api.get(f"{POOLS}/chat")).get("status") or {}
            return status if status.get("phase") == "RolledBack" else None

        status = await eventually(rolled_back, timeout_s=45, what="automatic rollback")
        bad = status["rolledBackRevision"]
        assert bad.startswith("v3-") and status["stableRevision"] == canary and "canaryRevision" not in status
        assert "error_rate" in status["lastRollback"]["reason"]
        condition = next(c for c in status["conditions"] if c["type"] == "RolledBack")
        assert condition["status"] == "True" and "error_rate" in condition["message"]
        assert outcomes.get(f"failed:{canary}", 0) == 0  # clients routed to stable saw no failure
        assert outcomes.get(f"failed:{bad}", 0) >= 1
        assert router.pools["default.chat"].rollout.split.canary_weight == 0

        # deleted: children cascade, the route goes
        await api.delete(f"{POOLS}/chat")

        async def all_gone():
            return not await api.list(DEPLOYMENTS) and not await api.list(SERVICES) and "default.chat" not in router.pools

        await eventually(all_gone, what="children and route deleted")
