"""The whole system on this machine, with only the Kubernetes API emulated (no real API server can
run here; e2e/cluster.sh tells the same story to a real cluster):

- the emulated cluster (tests/support/emulated_cluster.py): an API server that checks ModelPool
  writes against the CRD's schema and CEL rules, a Deployment controller, and a local node that
  runs each pod's `shoal runtime` container as a real CPU process on the pod's loopback address;
- `shoal router`, started with no pools (e2e/local/router.yaml), and `shoal operator`, which puts
  the pools' routes into it, each as its own process;
- kubectl for what a user does; the OpenAI SDK for the clients (e2e/traffic.py).
"""

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from e2e.processes import shoal_process, tail
from tests.runtime.server_process import free_port
from tests.support.api_paths import object_path
from tests.support.crd_schema import load_crd, write_validator
from tests.support.emulated_api import crd_files
from tests.support.emulated_cluster import EmulatedCluster, emulated_cluster
from tests.support.kubectl import kubectl
from tests.support.polling import eventually

LOCAL = Path(__file__).parent / "local"
POOL_API_VERSION = "shoal.dev/v1alpha1"
MODELPOOLS = f"{POOL_API_VERSION}/modelpools"
API_KEY = "sk-shoal-e2e"  # e2e/local/api-keys.yaml
RECONCILE_INTERVAL_S = 0.5
DRAIN_S = 2.0


@dataclass(frozen=True)
class LocalSystem:
    cluster: EmulatedCluster
    router_url: str  # the OpenAI API is under /v1
    router_admin_url: str
    operator_metrics_url: str
    logs: Path

    async def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return await kubectl(self.cluster.kubeconfig, *args, stdin=stdin)

    async def kubectl_json(self, *args: str) -> Any:
        return json.loads(await self.kubectl(*args, "-o", "json"))

    async def pool_status(self, name: str, namespace: str = "default") -> dict[str, Any]:
        pool = await self.cluster.client.get(object_path(POOL_API_VERSION, "modelpools", namespace, name))
        return pool.get("status") or {}

    async def wait_for_status(self, name: str, accept, *, timeout: float, what: str) -> dict[str, Any]:
        return await eventually(lambda: self.pool_status(name), accept, timeout=timeout, what=what)

    def status_history(self, name: str, namespace: str = "default") -> list[dict[str, Any]]:
        """The pool's status in every version the API server stored, oldest first."""
        stored = self.cluster.api.objects[MODELPOOLS, namespace, name]
        return [version.get("status") or {} for version in stored.history]

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
        """The operator's, the router's and every pod's last lines, for a failing test's output."""
        logs = [self.logs / "operator.log", self.logs / "router.log", *sorted(self.cluster.pod_logs.glob("*.log"))]
        return "\n".join(f"--- {path.name}\n{tail(path)}" for path in logs)


@contextlib.asynccontextmanager
async def local_system(directory: Path) -> AsyncIterator[LocalSystem]:
    (crd,) = [load_crd(path) for path in crd_files() if path.name == "modelpool.yaml"]
    validators = {MODELPOOLS: write_validator(crd)}
    async with emulated_cluster(directory, validators=validators) as cluster:
        http, admin, grpc, liveness, metrics = free_port(), free_port(), free_port(), free_port(), free_port()
        router_url, admin_url = f"http://127.0.0.1:{http}", f"http://127.0.0.1:{admin}"
        router = ["router", "--config", str(LOCAL / "router.yaml"), "--port", str(http), "--admin-port", str(admin), "--grpc-port", str(grpc)]  # fmt: skip
        operator = [
            "operator", "--router-admin-url", admin_url, "--reconcile-interval", str(RECONCILE_INTERVAL_S),
            "--drain", str(DRAIN_S), "--liveness", f"http://127.0.0.1:{liveness}/healthz",
            "--metrics-host", "127.0.0.1", "--metrics-port", str(metrics),
        ]  # fmt: skip
        async with (
            shoal_process(router, log=directory / "router.log", ready_url=f"{router_url}/ready"),
            shoal_process(operator, log=directory / "operator.log", ready_url=f"http://127.0.0.1:{liveness}/healthz", env={"KUBECONFIG": str(cluster.kubeconfig)}),  # fmt: skip
        ):
            yield LocalSystem(cluster, router_url, admin_url, f"http://127.0.0.1:{metrics}/metrics", directory)
