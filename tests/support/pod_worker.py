"""One pod on the local node, from the scheduler's binding to its deletion (the kubelet's pod
worker). Admitting it: refuse it (pod_launch.py says why), or give it a network namespace and an
address (pod_network.py), fetch what it refers to (ConfigMaps, Secrets, service-account tokens;
while one is missing the pod waits, and the worker tries again), write its volumes and /etc files
into its folder, and start its process (pod_runner.py). When the pod is marked for deletion: stop
the process (SIGTERM, SIGKILL after the deletion's grace period, capped), remove its namespace and
folder, and delete the pod for good (gracePeriodSeconds 0, only this uid), as the kubelet does.
"""

import asyncio
import contextlib
import dataclasses
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.api_client import ApiClient, ApiError
from tests.support.api_paths import object_path
from tests.support.node_heartbeat import now
from tests.support.pod_env import Placement
from tests.support.pod_launch import Launch, UnsupportedPod, check_supported, launch_of
from tests.support.pod_network import PodNetwork, PodSandbox
from tests.support.pod_references import (
    MissingReference,
    PodObjects,
    References,
    TokenSpec,
    config_map_data,
    references,
    secret_data,
)
from tests.support.pod_runner import PodRunner
from tests.support.pod_sandbox import bind_mounts, etc_files, kept_in_view, prepare_sources, sandbox_argv, write_etc
from tests.support.pod_status import PodState, pod_status, refused_status, scheduled_condition
from tests.support.pod_volumes import volume_files, write_volume

RETRY_S = 1.0  # between attempts to fetch what a waiting pod refers to

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeContext:
    """What the node's pod workers share."""

    client: ApiClient
    network: PodNetwork
    probes: aiohttp.ClientSession
    node_name: str
    api_service_port: int  # where pods reach the API server, on the gateway (api_proxy.py)
    allocatable: Mapping[str, str]
    executables: Mapping[str, str]  # command[0] -> the executable that runs it
    software: tuple[Path, ...]  # host folders the executables need, visible in every pod
    log_dir: Path  # <namespace>_<pod>.log
    state_dir: Path  # a folder per pod: volumes/, etc/
    base_env: Mapping[str, str]  # beneath each container's own variables
    max_grace_s: float


class PodWorker:
    def __init__(self, pod: Mapping[str, Any], node: NodeContext):
        metadata = pod["metadata"]
        self._pod = pod
        self._node = node
        self._name = f"{metadata['namespace']}/{metadata['name']}"
        self._path = object_path("v1", "pods", metadata["namespace"], metadata["name"])
        self._uid = metadata["uid"]
        self._folder = node.state_dir / f"{metadata['namespace']}_{metadata['name']}_{self._uid}"
        self._sandbox: PodSandbox | None = None
        self._runner: PodRunner | None = None
        self._admitting: asyncio.Task[None] | None = None
        self._finishing: asyncio.Task[None] | None = None
        self._latest: dict[str, Any] | None = None  # the status to write...
        self._reported: dict[str, Any] | None = None  # ...and the one last written
        self._sender: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._admitting = asyncio.create_task(self._admit(), name=f"admit {self._name}")

    def update(self, pod: Mapping[str, Any]) -> None:
        """A newer version of the pod: once it is marked for deletion, finish it."""
        self._pod = pod
        if pod["metadata"].get("deletionTimestamp") and self._finishing is None:
            self._finishing = asyncio.create_task(self._finish(), name=f"finish {self._name}")

    async def stop(self) -> None:
        """The pod is gone from the API, or the node stops: stop its process, remove its sandbox."""
        if self._finishing is not None:
            await asyncio.gather(self._finishing, return_exceptions=True)
        await self._release(self._node.max_grace_s)
        if self._sender is not None:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)

    async def _admit(self) -> None:
        pod = self._pod
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") or pod["metadata"].get(
            "deletionTimestamp"
        ):
            return  # done (or refused) before this node started, or being deleted: nothing to run
        try:
            check_supported(pod, self._node.executables)
        except UnsupportedPod as refusal:
            log.info("pod %s refused: %s", self._name, refusal)
            await self._report(refused_status(str(refusal)))
            return
        try:
            await self._start(pod)
        except Exception as error:  # reported, so that a test sees why rather than a pod Pending
            log.exception("pod %s: the local node failed to start it", self._name)
            await self._report(
                {"phase": "Failed", "reason": "LocalNodeError", "message": f"{type(error).__name__}: {error}"}
            )

    async def _start(self, pod: Mapping[str, Any]) -> None:
        node = self._node
        self._sandbox = sandbox = node.network.allocate()
        await node.network.create(sandbox)
        container = pod["spec"]["containers"][0]
        state = PodState(
            pod_ip=sandbox.address,
            host_ip=node.network.gateway,
            start_time=now(),
            container=container["name"],
            image=container.get("image", ""),
            scheduled=scheduled_condition(pod),
        )
        placement = Placement(
            node.node_name,
            node.network.gateway,
            sandbox.address,
            node.network.gateway,
            node.api_service_port,
            node.allocatable,
        )
        launch = await self._prepare(pod, placement, state)
        mounts = prepare_sources(bind_mounts(launch.mounts, self._folder / "volumes", self._folder / "etc"))
        mounts += kept_in_view(mounts, node.software)
        launch = dataclasses.replace(launch, grace_s=min(launch.grace_s, node.max_grace_s))
        self._runner = PodRunner(
            launch,
            sandbox_argv(sandbox.netns, mounts, launch.working_dir, launch.argv),
            state,
            log_path=node.log_dir / f"{pod['metadata']['namespace']}_{pod['metadata']['name']}.log",
            base_env=node.base_env,
            probes=node.probes,
            report=self._report,
        )
        self._runner.start()
        log.info("pod %s runs at %s (netns %s)", self._name, sandbox.address, sandbox.netns)

    async def _prepare(self, pod: Mapping[str, Any], placement: Placement, state: PodState) -> Launch:
        """Wait until everything the pod refers to is there (reporting why it waits), then write
        its volumes and /etc files; what to run."""
        while True:
            objects = await self._fetch(references(pod))
            try:
                launch = launch_of(pod, placement, objects, self._node.executables)
                volumes = {
                    volume["name"]: volume_files(pod, volume, objects, placement)
                    for volume in pod["spec"].get("volumes") or []
                }
                break
            except MissingReference as missing:  # the kubelet's FailedMount / CreateContainerConfigError
                state.state = {"waiting": {"reason": missing.reason, "message": str(missing)}}
                await self._report(pod_status(state))
                await asyncio.sleep(RETRY_S)
        for name, files in volumes.items():
            write_volume(self._folder / "volumes" / name, files)
        metadata, spec = pod["metadata"], pod["spec"]
        hosts = etc_files(
            hostname=spec.get("hostname") or metadata["name"],
            pod_ip=placement.pod_ip,
            namespace=metadata["namespace"],
            api_host=placement.api_host,
            subdomain=spec.get("subdomain", ""),
        )
        write_etc(self._folder / "etc", hosts)
        return launch

    async def _fetch(self, wanted: References) -> PodObjects:
        """What the pod refers to, as far as it is there now (the rest: MissingReference later)."""
        namespace = self._pod["metadata"]["namespace"]
        config_maps, secrets, tokens = {}, {}, {}
        for name in wanted.config_maps:
            if (found := await self._get(object_path("v1", "configmaps", namespace, name))) is not None:
                config_maps[name] = config_map_data(found)
        for name in wanted.secrets:
            if (found := await self._get(object_path("v1", "secrets", namespace, name))) is not None:
                secrets[name] = secret_data(found)
        for spec in wanted.tokens:
            if (token := await self._token(spec)) is not None:
                tokens[spec] = token
        return PodObjects(config_maps, secrets, tokens)

    async def _get(self, path: str) -> dict[str, Any] | None:
        # 403 too: the Node authorizer lets a node read what its pods refer to once it has seen
        # the binding, which may be a moment after the node has.
        try:
            return await self._node.client.get(path)
        except (ApiError, aiohttp.ClientError) as error:
            log.info("pod %s: %s: %s", self._name, path, error)
            return None

    async def _token(self, spec: TokenSpec) -> str | None:
        """A service-account token bound to this pod (it stops working once the pod is gone)."""
        metadata = self._pod["metadata"]
        account = self._pod["spec"].get("serviceAccountName", "default")
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                **({"audiences": list(spec.audiences)} if spec.audiences else {}),
                "expirationSeconds": spec.expiration_s,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": metadata["name"], "uid": self._uid},
            },
        }
        path = object_path("v1", "serviceaccounts", metadata["namespace"], account, "token")
        try:
            return (await self._node.client.create(path, request))["status"]["token"]
        except (ApiError, aiohttp.ClientError) as error:
            log.info("pod %s: token for %s: %s", self._name, account, error)
            return None

    async def _finish(self) -> None:
        grace = self._pod["metadata"].get("deletionGracePeriodSeconds", 30)
        await self._release(min(grace, self._node.max_grace_s))
        while True:
            try:
                await self._node.client.delete(self._path, grace_seconds=0, uid=self._uid)
                log.info("pod %s stopped and deleted", self._name)
                return
            except (ApiError, aiohttp.ClientError) as error:  # e.g. the API server restarting
                log.info("pod %s: not deleted yet: %s", self._name, error)
                await asyncio.sleep(RETRY_S)

    async def _release(self, grace_s: float) -> None:
        """Stop the process and remove the sandbox and folder; safe to repeat."""
        if self._admitting is not None:
            self._admitting.cancel()
            await asyncio.gather(self._admitting, return_exceptions=True)
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.stop(grace_s)
        sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            await self._node.network.remove(sandbox)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self._folder)

    async def _report(self, status: dict[str, Any]) -> None:
        """Have the status written: in the background, the latest one, retried until the API
        takes it (the kubelet's status manager), so that an API server restart loses nothing."""
        self._latest = status
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send(), name=f"status {self._name}")

    async def _send(self) -> None:
        while self._latest is not None and self._latest != self._reported:
            status = self._latest
            try:
                await self._node.client.merge_patch(f"{self._path}/status", {"status": status})
                self._reported = status
            except (ApiError, aiohttp.ClientError) as error:
                if isinstance(error, ApiError) and error.status == 404:
                    return  # the pod is gone
                log.info("pod %s: status not written yet: %s", self._name, error)
                await asyncio.sleep(RETRY_S)
