"""What the operator's tests on the real API share: ModelPools placed on the fake node, `shoal
operator` as a process of its own (so a test can kill it), a router in the test's event loop whose
admin API the operator drives, and traffic through it."""

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import openai

from e2e.processes import shoal_process
from shoal.constants import API_VERSION, KIND, PLURAL
from shoal.router.app import Router
from tests.operator.fake_node import FAULT_FLAG, PLACEMENT
from tests.support.api_client import ApiClient, ApiError
from tests.support.api_paths import object_path
from tests.support.control_plane import free_port

POOL = "chat"
POOL_API = API_VERSION
RECONCILE_INTERVAL_S = 0.3
DRAIN_S = 1.0


def modelpool(
    revision: str,
    *,
    name: str = POOL,
    replicas: int = 2,
    args: Sequence[str] = (),
    steps: Sequence[tuple[int, str]] = ((50, "1s"),),
    min_samples: int = 6,
) -> dict:
    """A pool of fake runtimes on the fake node (its nodeSelector and toleration); `args` with
    FAULT_FLAG makes them fail every request."""
    return {
        "apiVersion": POOL_API,
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {
            "model": {"source": "embedded", "revision": revision},
            "replicas": replicas,
            "runtime": {"device": "cpu", "args": list(args)},
            "resources": {"gpus": 0},
            "nodeSelector": PLACEMENT.node_selector,
            "tolerations": PLACEMENT.tolerations,
            "rollout": {
                "steps": [{"weight": weight, "pause": pause} for weight, pause in steps],
                "analysis": {"minSamples": min_samples, "windowSeconds": 30},
            },
        },
    }


def failing(revision: str, **settings) -> dict:
    return modelpool(revision, args=(FAULT_FLAG, "1.0"), **settings)


def pools(namespace: str, name: str | None = None) -> str:
    return object_path(POOL_API, PLURAL, namespace, name)


def deployments(namespace: str) -> str:
    return object_path("apps/v1", "deployments", namespace)


def services(namespace: str) -> str:
    return object_path("v1", "services", namespace)


async def pool_status(api: ApiClient, namespace: str, name: str = POOL) -> dict:
    return (await api.get(pools(namespace, name))).get("status") or {}


async def deployment_names(api: ApiClient, namespace: str) -> list[str]:
    return sorted(d["metadata"]["name"] for d in await api.list(deployments(namespace)))


async def send(router: Router, n: int, model: str = POOL) -> dict[str, int]:
    """n chat completions through the router; outcomes by the revision that answered."""
    client = openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{router.http_port}/v1", api_key="sk-test-quiet", max_retries=0
    )
    outcomes: dict[str, int] = {}
    try:
        for _ in range(n):
            try:
                raw = await client.chat.completions.with_raw_response.create(
                    model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=2
                )
                key = "ok:" + raw.headers["x-shoal-revision"]
            except openai.APIStatusError as error:
                key = "failed:" + error.response.headers.get("x-shoal-revision", "?")
            outcomes[key] = outcomes.get(key, 0) + 1
    finally:
        await client.close()
    return outcomes


@dataclass(frozen=True)
class LeaderElection:
    """--leader-elect with a lease short enough for a test."""

    lease_id: str
    lease_duration_s: float = 4.0  # long enough that a busy test machine does not lose it by accident
    renew_deadline_s: float = 3.0
    retry_period_s: float = 0.5
    namespace: str = "shoal-system"

    def args(self) -> list[str]:
        return [
            "--leader-elect",
            "--leader-election-namespace",
            self.namespace,
            "--leader-election-id",
            self.lease_id,
            "--leader-election-lease-duration",
            str(self.lease_duration_s),
            "--leader-election-renew-deadline",
            str(self.renew_deadline_s),
            "--leader-election-retry-period",
            str(self.retry_period_s),
        ]


@dataclass
class OperatorProcess:
    process: asyncio.subprocess.Process
    log: Path
    metrics_url: str

    async def kill(self) -> None:
        """SIGKILL: no clean-up, no lease released: a crash or a lost node."""
        self.process.kill()
        await self.process.wait()

    def freeze(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)


def admin_url(router: Router) -> str:
    return f"http://127.0.0.1:{router.admin_port}"


@contextlib.asynccontextmanager
async def running_operator(
    kubeconfig: Path,
    router_admin_url: str,
    log: Path,
    *,
    namespaces: Sequence[str] = (),
    leader_election: LeaderElection | None = None,
    name: str = "operator",
    reconcile_interval_s: float = RECONCILE_INTERVAL_S,
    drain_s: float = DRAIN_S,
) -> AsyncIterator[OperatorProcess]:
    """`shoal operator` logged in with `kubeconfig`, driving `router`; yielded once its liveness
    endpoint answers (kopf runs; or, with leader election, the replica waits as a candidate).
    POD_NAME=name starts its leader-election identity."""
    liveness, metrics = free_port(), free_port()
    args = ["operator", "--router-admin-url", router_admin_url]
    for namespace in namespaces:
        args += ["--namespace", namespace]
    args += ["--reconcile-interval", str(reconcile_interval_s), "--drain", str(drain_s)]
    args += [
        "--liveness",
        f"http://127.0.0.1:{liveness}/healthz",
        "--metrics-host",
        "127.0.0.1",
        "--metrics-port",
        str(metrics),
    ]
    args += leader_election.args() if leader_election else []
    env = {"KUBECONFIG": str(kubeconfig), "POD_NAME": name}
    async with shoal_process(args, log=log, ready_url=f"http://127.0.0.1:{liveness}/healthz", env=env) as process:
        yield OperatorProcess(process, log, f"http://127.0.0.1:{metrics}/metrics")


async def lease_holder(api: ApiClient, election: LeaderElection) -> str | None:
    """The identity holding the lease (POD_NAME_<random>), None if none does or there is no lease."""
    try:
        lease = await api.get(object_path("coordination.k8s.io/v1", "leases", election.namespace, election.lease_id))
    except ApiError as error:
        if error.status == 404:  # before the first candidate created it
            return None
        raise
    return (lease.get("spec") or {}).get("holderIdentity")
