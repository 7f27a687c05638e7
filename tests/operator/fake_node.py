"""A fake node in kwok's manner: a Node object (labelled, tainted, its Lease renewed) that the real
scheduler binds the operator's runtime pods to, and a loop standing in for its kubelet that runs
each pod bound here as a tests.router.fake_runtime.FakeRuntime instead of a container.

Each pod gets a loopback address of its own (127.77.0.2, .3, ...; the node's is .1): Linux routes
all of 127/8 to lo, so every pod can listen on the ports it declares (an address another test
session's fake node holds is skipped). Its fake runtime fails every request when the container
was given the fault flag; it runs as many requests at once as the container's --max-num-seqs (the
pool's spec.runtime.maxNumSeqs), the others wait, as in a runtime's batch, and its /metrics show it
(fake_runtime.py); it answers at once, or at SPEED_FLAG's seconds a token. Its status is reported
the kubelet's way: a merge patch of pods/status (podIP, phase, Ready...), never the whole status,
which the API server shares (status.qosClass is its own). A pod marked for deletion has its
runtime stopped and is then deleted for good (grace 0, this pod's uid only), as a kubelet does once
the containers have exited. Volumes, probes and env are ignored: nothing runs in a pod. (The
EndpointSlice controller refuses loopback addresses and says so in its log; nothing here needs the
slices: the operator reads pods.)

    with fake_node_in_thread(access) as node:  # pool pods with PLACEMENT's selector and toleration
        ...
"""

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc

from tests.router.fake_runtime import FakeRuntime
from tests.support.api_client import ApiClient, ApiError
from tests.support.api_paths import object_path
from tests.support.kubeconfig import ClusterAccess
from tests.support.node_heartbeat import NodeShape, keep_alive, now, register_node
from tests.support.pod_status import PodState, pod_status, scheduled_condition

NAME = "fake-runtimes"
LABEL = ("shoal.dev/test-node", "fake-runtimes")
SUBNET = "127.77.0.0/16"
FAULT_FLAG = "--fault-error-rate"  # a pool's runtime arg: its fake runtimes fail every request
SPEED_FLAG = "--fake-token-delay-s"  # a pool's runtime arg, the fake runtimes' only: seconds a token
POLL_S = 0.2
BIND_ATTEMPTS = 20
READY_TIMEOUT_S = 30.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FakeNodePlacement:
    """What a ModelPool's spec needs to land on the fake node, and only there."""

    node_selector: dict[str, str]
    tolerations: list[dict[str, str]]


PLACEMENT = FakeNodePlacement(
    node_selector={LABEL[0]: LABEL[1]},
    # The taint keeps every other pod of the session (the local node's) off the fake node.
    tolerations=[{"key": LABEL[0], "operator": "Equal", "value": LABEL[1], "effect": "NoSchedule"}],
)


def node_shape(name: str = NAME) -> NodeShape:
    taint = {"key": LABEL[0], "value": LABEL[1], "effect": "NoSchedule"}
    return NodeShape(
        name=name, address="127.77.0.1", labels={LABEL[0]: LABEL[1]}, taints=(taint,), runtime="fake-runtime://1"
    )


class FakeNode:
    def __init__(self, client: ApiClient, shape: NodeShape, *, subnet: str = SUBNET, poll_s: float = POLL_S):
        self.shape = shape
        self._client = client
        self._poll_s = poll_s
        self._addresses = (str(ip) for ip in itertools.islice(ipaddress.ip_network(subnet).hosts(), 1, None))
        self._running: dict[str, tuple[FakeRuntime, str]] = {}  # pod uid -> (runtime, its address)
        self.registered = asyncio.Event()

    async def run(self) -> None:
        """Register, then run pods until cancelled; every runtime is stopped on the way out."""
        await register_node(self._client, self.shape)
        heartbeat = asyncio.create_task(keep_alive(self._client, self.shape))
        self.registered.set()
        try:
            while True:
                try:
                    await self._sync()
                except (ApiError, aiohttp.ClientError, OSError) as error:  # e.g. the API server restarting
                    log.info("fake node: %s", error)
                await asyncio.sleep(self._poll_s)
        finally:
            heartbeat.cancel()
            await asyncio.gather(
                heartbeat, *(runtime.stop() for runtime, _ in self._running.values()), return_exceptions=True
            )

    async def _sync(self) -> None:
        pods = await self._client.list(object_path("v1", "pods"), field_selector=f"spec.nodeName={self.shape.name}")
        listed = {pod["metadata"]["uid"] for pod in pods}
        for pod in pods:
            if pod["metadata"].get("deletionTimestamp"):
                await self._finish(pod)
            elif pod["metadata"]["uid"] not in self._running:
                await self._start(pod)
            elif not _reported(pod):  # an earlier report did not get through
                await self._report(pod, self._running[pod["metadata"]["uid"]][1])
        for uid in set(self._running) - listed:  # deleted without a grace period
            await self._running.pop(uid)[0].stop()

    async def _start(self, pod: dict[str, Any]) -> None:
        container = pod["spec"]["containers"][0]
        labels = pod["metadata"].get("labels") or {}
        args = container.get("args") or []
        runtime = FakeRuntime(
            revision=labels.get("shoal.dev/revision", "?"),
            model=labels.get("shoal.dev/pool", "?"),
            delay_s=float(_arg(args, SPEED_FLAG, "0")),
            max_num_seqs=int(_arg(args, "--max-num-seqs", "0")) or None,
        )
        if FAULT_FLAG in args:
            runtime.error = grpc.StatusCode.INTERNAL
        ports = {p["name"]: p["containerPort"] for p in container.get("ports") or ()}
        for _ in range(BIND_ATTEMPTS):
            address = next(self._addresses)
            try:
                await runtime.start(ports.get("grpc", 0), ports.get("metrics", 0), host=address)
                break
            except (RuntimeError, OSError) as error:  # taken (another test session's fake node): the next one
                log.info("fake node: %s: %s", address, error)
                await runtime.stop()
        else:
            raise OSError(f"no free address for pod {pod['metadata']['name']} after {BIND_ATTEMPTS} tries")
        self._running[pod["metadata"]["uid"]] = (runtime, address)
        await self._report(pod, address)

    async def _report(self, pod: dict[str, Any], address: str) -> None:
        metadata = pod["metadata"]
        path = object_path("v1", "pods", metadata["namespace"], metadata["name"], "status")
        try:
            await self._client.merge_patch(path, {"status": running_status(pod, address, self.shape.address)})
        except ApiError as error:  # deleted meanwhile: the next pass sees it gone
            log.info("fake node: status of %s/%s not written: %s", metadata["namespace"], metadata["name"], error)

    async def _finish(self, pod: dict[str, Any]) -> None:
        metadata = pod["metadata"]
        running = self._running.pop(metadata["uid"], None)
        if running is not None:
            await running[0].stop()
        await self._client.delete(
            object_path("v1", "pods", metadata["namespace"], metadata["name"]), grace_seconds=0, uid=metadata["uid"]
        )


def running_status(pod: dict[str, Any], address: str, host_ip: str) -> dict[str, Any]:
    """What a kubelet reports for a pod whose one container runs and is ready: the keys it owns,
    the rest (qosClass, ...) left to the API server; written as the local node writes its pods'
    (pod_status.py), the scheduler's PodScheduled carried along."""
    at = now()
    container = pod["spec"]["containers"][0]
    state = PodState(
        pod_ip=address,
        host_ip=host_ip,
        start_time=at,
        container=container["name"],
        image=container.get("image", ""),
        scheduled=scheduled_condition(pod),
        phase="Running",
        started=True,
        ready=True,
        ready_since=at,
        container_id=f"fake://{pod['metadata']['uid']}",
        state={"running": {"startedAt": at}},
    )
    return pod_status(state)


def _arg(args: list[str], flag: str, default: str) -> str:
    """The value after `flag` in a container's args (the last, as argparse takes it), else `default`."""
    values = [value for name, value in zip(args, args[1:], strict=False) if name == flag]
    return values[-1] if values else default


def _reported(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and bool(status.get("podIP"))


@contextlib.contextmanager
def fake_node_in_thread(access: ClusterAccess, shape: NodeShape | None = None) -> Iterator[FakeNode]:
    """The fake node on an event loop of its own (a thread), so it outlives each test's loop and
    keeps finishing the pods of namespaces deleted after their tests; yielded once registered."""
    loop = asyncio.new_event_loop()
    started: list[FakeNode] = []

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            node = FakeNode(ApiClient(session, access), shape or node_shape())
            started.append(node)
            await node.run()

    task = loop.create_task(main())
    thread = threading.Thread(
        target=lambda: loop.run_until_complete(asyncio.gather(task, return_exceptions=True)),
        name="fake-node",
        daemon=True,
    )
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(_wait_registered(started, task), loop).result(READY_TIMEOUT_S)
        yield started[0]
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(30)
        loop.close()


async def _wait_registered(started: list[FakeNode], task: asyncio.Task) -> None:
    while not (started and started[0].registered.is_set()):
        if task.done():
            task.result()  # raises what stopped the node (e.g. it could not register)
            raise RuntimeError("the fake node stopped before it registered")
        await asyncio.sleep(0.05)
