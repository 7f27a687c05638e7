"""The local node: a stand-in kubelet for the test cluster whose pods are local processes, not
containers (no image; each pod's process gets its own network and mount namespaces, and runs as
the node's user, root, on the host's file system).

It registers a Node (capacity: cpu, memory, pods, and `nvidia.com/gpu` with --gpus N; InternalIP:
the pod network's gateway), keeps its Lease fresh (node_heartbeat.py), and watches the pods that
the scheduler binds to it (fieldSelector spec.nodeName=<name>). Each pod gets a worker
(pod_worker.py): network namespace and address (pod_network.py), volumes (pod_volumes.py), its one
container's command as a process (pod_launch.py, pod_sandbox.py, pod_runner.py), probes, restarts,
status, graceful deletion. Pods reach the API server at <gateway>:443 (api_proxy.py). Each pod's
output goes to `<log dir>/<namespace>_<pod>.log`.

Stopping the node (SIGTERM, Ctrl-C) stops every pod's process and removes the namespaces and the
bridge; the pods stay in the API, as a stopped kubelet leaves them.

    python -m tests.support.local_node --kubeconfig PATH --log-dir DIR --api-server-port PORT

It must run as root (network namespaces, bridge, bind mounts, port 443 on the gateway).
"""

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.api_client import ApiClient, ApiError
from tests.support.api_paths import object_path
from tests.support.api_proxy import API_SERVICE_PORT, serve_api_proxy
from tests.support.kubeconfig import read_kubeconfig
from tests.support.node_heartbeat import NodeShape, keep_alive, register_node
from tests.support.pod_network import DEFAULT_POD_CIDR, PodNetwork
from tests.support.pod_worker import NodeContext, PodWorker

ROOT = Path(__file__).resolve().parents[2]
MAX_GRACE_S = 10.0  # a pod's termination grace period is capped here, to keep tests short
SHOAL = str(Path(sys.executable).with_name("shoal"))  # this venv's `shoal`, for `command: [shoal]`
EXECUTABLES = {"shoal": SHOAL, "python": sys.executable, "python3": sys.executable}
# What those executables need from the host (the editable install points into the checkout; the
# runtime keeps the converted model in a cache under the home folder): an image's files, in a
# container's terms.
SOFTWARE = tuple(dict.fromkeys(Path(folder).resolve() for folder in (ROOT, sys.prefix, sys.base_prefix, Path.home())))
WATCH_RETRY_S = 1.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeConfig:
    log_dir: Path
    state_dir: Path  # a folder per pod (its volumes and /etc files), removed with the pod
    api_server_port: int  # on 127.0.0.1, where the API proxy forwards to
    name: str = "local-node"
    pod_cidr: str = DEFAULT_POD_CIDR
    pod_network_lock_fd: int | None = None  # the CIDR's lock, held by whoever started the node
    cpu: str = "64"  # what the scheduler may place here, not what the machine has
    memory: str = "256Gi"
    pods: int = 110
    gpus: int = 0  # nvidia.com/gpu capacity; 0: the Node has none
    max_grace_s: float = MAX_GRACE_S


def node_capacity(config: NodeConfig) -> dict[str, str]:
    capacity = {"cpu": config.cpu, "memory": config.memory, "pods": str(config.pods)}
    return capacity | ({"nvidia.com/gpu": str(config.gpus)} if config.gpus else {})


def pod_base_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The node's environment beneath each container's (PATH, HOME: the runtime caches its
    converted model under ~/.cache/shoal), less what would point a pod at the cluster other than
    through its own service account."""
    return {key: value for key, value in environ.items() if key != "KUBECONFIG" and not key.startswith("KUBERNETES_")}


class LocalNode:
    def __init__(self, client: ApiClient, config: NodeConfig):
        self._client = client
        self._config = config
        self._workers: dict[str, PodWorker] = {}  # by pod uid
        self._stopping: set[asyncio.Task[None]] = set()  # workers of pods gone from the API

    async def run(self) -> None:
        """Run the node until cancelled; then stop every pod and remove the pod network."""
        config = self._config
        config.log_dir.mkdir(parents=True, exist_ok=True)
        config.state_dir.mkdir(parents=True, exist_ok=True)
        network = PodNetwork(config.pod_cidr, lock_fd=config.pod_network_lock_fd)
        shape = NodeShape(name=config.name, address=network.gateway, capacity=node_capacity(config))
        try:
            await network.setup()
            proxy = await serve_api_proxy(network.gateway, config.api_server_port)
            # Probes open a connection each time, as the kubelet's do: no connection outlives a
            # restarted pod process.
            async with proxy, aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as probes:
                node = NodeContext(
                    client=self._client,
                    network=network,
                    probes=probes,
                    node_name=config.name,
                    api_service_port=API_SERVICE_PORT,
                    allocatable=shape.capacity,
                    executables=EXECUTABLES,
                    software=SOFTWARE,
                    log_dir=config.log_dir,
                    state_dir=config.state_dir,
                    base_env=pod_base_env(os.environ),
                    max_grace_s=config.max_grace_s,
                )
                await register_node(self._client, shape)
                heartbeat = asyncio.create_task(keep_alive(self._client, shape))
                try:
                    await self._watch_pods(node)
                finally:
                    heartbeat.cancel()
                    await asyncio.gather(
                        *self._stopping, *(worker.stop() for worker in self._workers.values()), return_exceptions=True
                    )
        finally:
            await network.teardown()

    async def _watch_pods(self, node: NodeContext) -> None:
        """List the node's pods, then watch them from there; list again when the watch cannot
        resume (410 Gone, errors)."""
        path, selector = object_path("v1", "pods"), f"spec.nodeName={self._config.name}"
        version = None
        while True:
            try:
                if version is None:
                    pods, version = await self._client.list_with_version(path, field_selector=selector)
                    self._sync(pods, node)
                async for event in self._client.watch(path, resource_version=version, field_selector=selector):
                    if event["type"] == "ERROR":  # e.g. 410: too old a version to resume from
                        log.info("local node: watch ended: %s", event["object"].get("message"))
                        version = None
                        break
                    pod = event["object"]
                    version = pod["metadata"]["resourceVersion"]
                    if event["type"] == "DELETED":
                        self._gone(pod["metadata"]["uid"])
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        self._seen(pod, node)
            except (ApiError, aiohttp.ClientError, TimeoutError) as error:
                log.info("local node: watching pods: %s", error)
                version = None
                await asyncio.sleep(WATCH_RETRY_S)

    def _sync(self, pods: list[dict[str, Any]], node: NodeContext) -> None:
        listed = {pod["metadata"]["uid"] for pod in pods}
        for uid in set(self._workers) - listed:
            self._gone(uid)
        for pod in pods:
            self._seen(pod, node)

    def _seen(self, pod: dict[str, Any], node: NodeContext) -> None:
        uid = pod["metadata"]["uid"]
        worker = self._workers.get(uid)
        if worker is None:
            worker = self._workers[uid] = PodWorker(pod, node)
            worker.start()
        worker.update(pod)

    def _gone(self, uid: str) -> None:
        worker = self._workers.pop(uid, None)
        if worker is not None:
            task = asyncio.create_task(worker.stop())
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)


async def _run_until_stopped(config: NodeConfig, kubeconfig: Path) -> None:
    async with aiohttp.ClientSession() as session:
        node = asyncio.create_task(LocalNode(ApiClient(session, read_kubeconfig(kubeconfig)), config).run())
        for signum in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(signum, node.cancel)
        try:
            await node
        except asyncio.CancelledError:
            pass  # stopped by a signal, after cleaning up


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Run the pods bound to this node as local processes until SIGTERM or Ctrl-C (as root)."
    )
    parser.add_argument("--kubeconfig", type=Path, required=True, help="the node's own (user system:node:<name>)")
    parser.add_argument("--log-dir", type=Path, required=True, help="one <namespace>_<pod>.log per pod")
    parser.add_argument(
        "--api-server-port",
        type=int,
        required=True,
        help="the API server's port on 127.0.0.1, forwarded to <gateway>:443 for pods",
    )
    parser.add_argument("--name", default="local-node", help="the Node's name (spec.nodeName of its pods)")
    parser.add_argument(
        "--state-dir", type=Path, help="a folder per pod for its volumes (default: <log dir>/../<name>-pods)"
    )
    parser.add_argument("--pod-cidr", default=DEFAULT_POD_CIDR, help="pod addresses; the first is the gateway")
    parser.add_argument(
        "--pod-network-lock-fd",
        type=int,
        help="an inherited descriptor holding the pod CIDR's lock (pod_network.reserved_pod_network)",
    )
    parser.add_argument("--gpus", type=int, default=0, help="the Node's nvidia.com/gpu capacity")
    parser.add_argument("--cpu", default=NodeConfig.cpu, help="the Node's cpu capacity")
    parser.add_argument("--memory", default=NodeConfig.memory, help="the Node's memory capacity")
    parser.add_argument(
        "--max-grace", type=float, default=MAX_GRACE_S, help="cap on pods' termination grace periods, seconds"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = NodeConfig(
        log_dir=args.log_dir,
        state_dir=args.state_dir or args.log_dir.parent / f"{args.name}-pods",
        api_server_port=args.api_server_port,
        name=args.name,
        pod_cidr=args.pod_cidr,
        pod_network_lock_fd=args.pod_network_lock_fd,
        cpu=args.cpu,
        memory=args.memory,
        gpus=args.gpus,
        max_grace_s=args.max_grace,
    )
    asyncio.run(_run_until_stopped(config, args.kubeconfig))


if __name__ == "__main__":
    main()
