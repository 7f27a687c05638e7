"""The whole system on this machine (e2e/cluster.sh tells the same story to any real cluster):

- the test cluster (tests/support/cluster.py): a real control plane (etcd, kube-apiserver,
  kube-controller-manager, kube-scheduler, `make k8s`), and the local node, a stand-in kubelet
  that runs each pod's `shoal runtime` container as a process (not a container) in a network
  namespace of its own, on the CPU, with the embedded model;
- `shoal router`, started with no pools (e2e/local/router.yaml), and `shoal operator` logged in
  with its ServiceAccount's token (crds/rbac.yaml, never admin), each as a process of its own;
- kubectl for what a user does; the OpenAI SDK for the clients (e2e/traffic.py).
"""

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from e2e.processes import shoal_process, tail
from tests.operator.harness import running_operator
from tests.runtime.server_process import free_port
from tests.support.api_client import ApiClient
from tests.support.api_paths import object_path
from tests.support.cluster import Cluster
from tests.support.kubectl import kubectl
from tests.support.polling import eventually
from tests.support.status_history import StatusHistory

LOCAL = Path(__file__).parent / "local"
POOL_API_VERSION = "shoal.dev/v1alpha1"
API_KEY = "sk-shoal-e2e"  # e2e/local/api-keys.yaml
RECONCILE_INTERVAL_S = 0.5
DRAIN_S = 2.0


@dataclass(frozen=True)
class LocalSystem:
    cluster: Cluster
    namespace: str
    client: ApiClient
    history: StatusHistory
    router_url: str  # the OpenAI API is under /v1
    router_admin_url: str
    operator_metrics_url: str
    logs: Path
    router_args: list[str]  # `shoal router ...` as started: a test that kills it starts it again so
    router_process: asyncio.subprocess.Process

    async def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return await kubectl(self.cluster.kubeconfig, "--namespace", self.namespace, *args, stdin=stdin)

    async def kubectl_json(self, *args: str) -> Any:
        return json.loads(await self.kubectl(*args, "-o", "json"))

    async def pool_status(self, name: str) -> dict[str, Any]:
        pool = await self.client.get(object_path(POOL_API_VERSION, "modelpools", self.namespace, name))
        return pool.get("status") or {}

    async def wait_for_status(self, name: str, accept, *, timeout: float, what: str) -> dict[str, Any]:
        return await eventually(lambda: self.pool_status(name), accept, timeout=timeout, what=what)

    async def roll_back_faulty(
        self, name: str, patch: dict, *, start_s: float, rollback_s: float
    ) -> tuple[dict[str, Any], float]:
        """Merge-patches the pool with a faulty revision, waits for its canary to take traffic and then
        for the pool to be RolledBack (within rollback_s of that); the status, and how long it took."""
        await self.kubectl("patch", "mp", name, "--type", "merge", "-p", json.dumps(patch))
        await self.wait_for_status(
            name,
            lambda s: s.get("canaryWeight", 0) > 0 or s.get("phase") == "RolledBack",
            timeout=start_s,
            what="the faulty canary takes traffic",
        )
        traffic_at = time.monotonic()
        status = await self.wait_for_status(
            name, lambda s: s.get("phase") == "RolledBack", timeout=rollback_s, what="automatic rollback"
        )
        return status, time.monotonic() - traffic_at

    def status_history(self, name: str) -> list[dict[str, Any]]:
        return list(self.history.statuses.get(name, []))

    async def router_pools(self) -> dict[str, Any]:
        """The router's pools by name, as its admin API describes them."""
        async with aiohttp.ClientSession() as session, session.get(f"{self.router_admin_url}/admin/pools") as response:
            response.raise_for_status()
            return {pool["name"]: pool for pool in (await response.json())["pools"]}

    async def operator_metrics(self) -> dict[tuple[str, frozenset], float]:
        """The operator's series as (name, labels) -> value."""
        async with aiohttp.ClientSession() as session, session.get(self.operator_metrics_url) as response:
            response.raise_for_status()
            text = await response.text()
        families = text_string_to_metric_families(text)
        return {(s.name, frozenset(s.labels.items())): s.value for family in families for s in family.samples}

    def log_tails(self) -> str:
        """The operator's, the router's, the node's and this test's pods' last lines, for a
        failing test's output."""
        pods = sorted(self.cluster.pod_logs.glob(f"{self.namespace}_*.log"))
        logs = [self.logs / "operator.log", self.logs / "router.log", self.cluster.node_log, *pods]
        return "\n".join(f"--- {path.name}\n{tail(path)}" for path in logs)


@contextlib.asynccontextmanager
async def local_system(cluster: Cluster, namespace: str, directory: Path) -> AsyncIterator[LocalSystem]:
    operator_kubeconfig = cluster.operator_kubeconfig(directory / "operator.kubeconfig")
    http, admin, grpc = free_port(), free_port(), free_port()
    router_url, admin_url = f"http://127.0.0.1:{http}", f"http://127.0.0.1:{admin}"
    router = [
        "router",
        "--config",
        str(LOCAL / "router.yaml"),
        "--port",
        str(http),
        "--admin-port",
        str(admin),
        "--grpc-port",
        str(grpc),
    ]
    async with (
        aiohttp.ClientSession() as session,
        shoal_process(router, log=directory / "router.log", ready_url=f"{router_url}/ready") as router_process,
        running_operator(
            operator_kubeconfig,
            admin_url,
            directory / "operator.log",
            namespaces=[namespace],
            reconcile_interval_s=RECONCILE_INTERVAL_S,
            drain_s=DRAIN_S,
        ) as operator,
    ):
        client = ApiClient(session, cluster.plane.admin)
        history = StatusHistory()
        following = asyncio.create_task(history.follow(client, object_path(POOL_API_VERSION, "modelpools", namespace)))
        try:
            yield LocalSystem(
                cluster,
                namespace,
                client,
                history,
                router_url,
                admin_url,
                operator.metrics_url,
                directory,
                router,
                router_process,
            )
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
