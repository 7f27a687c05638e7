"""A stand-in kubelet: runs the pods of the emulated cluster as local processes.

Every `interval` seconds it lists pods. A pod bound to no node is bound to this one (a plain
spec.nodeName patch, where a scheduler would POST a Binding), gets the next loopback address of
the node's subnet (127.0.0.2, .3, ...: Linux routes all of 127/8 to lo, so every pod can listen
on the same ports) and its container runs as a process (see pod_launch.py for what it supports,
pod_runner.py for how it runs). A pod marked for deletion is stopped (SIGTERM, then SIGKILL after
its grace period, capped) and then deleted for good, as the kubelet does. Each pod's output goes to
`<log dir>/<namespace>_<name>.log`. Stopping the node stops every process.

Run it in-process as `asyncio.create_task(LocalNode(client, log_dir=...).run())`, or as a
process: `python -m tests.support.local_node --kubeconfig PATH --log-dir DIR`.
"""

import argparse
import asyncio
import datetime
import ipaddress
import itertools
import logging
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.api_client import ApiClient, ApiError
from tests.support.api_paths import object_path
from tests.support.kubeconfig import server_of
from tests.support.object_writes import timestamp
from tests.support.pod_launch import UnsupportedPod, launch_of
from tests.support.pod_runner import PodRunner, PodState, refused_status

HOST_IP = "127.0.0.1"
MAX_GRACE_S = 10.0  # a pod's terminationGracePeriodSeconds is capped here, to keep tests short
SHOAL = str(Path(sys.executable).with_name("shoal"))  # this venv's `shoal`, for `command: [shoal]`

log = logging.getLogger(__name__)


class LocalNode:
    def __init__(
        self,
        client: ApiClient,
        *,
        log_dir: Path,
        name: str = "local-node",
        subnet: str = "127.0.0.0/16",
        interval: float = 0.2,
        max_grace_s: float = MAX_GRACE_S,
    ):
        self.name = name
        self._client = client
        self._log_dir = log_dir
        self._interval = interval
        self._max_grace_s = max_grace_s
        # The subnet's first address is the host's (127.0.0.1); pods take the ones after it.
        self._addresses = itertools.islice(ipaddress.ip_network(subnet).hosts(), 1, None)
        self._runners: dict[str, PodRunner | None] = {}  # by pod uid; None: not run (refused, done)
        self._stopping: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> None:
        """Run pods until cancelled; then stop every process."""
        self._log_dir.mkdir(parents=True, exist_ok=True)
        async with aiohttp.ClientSession() as probes:
            try:
                while True:
                    try:
                        await self._sync(await self._client.list(object_path("v1", "pods")), probes)
                    except (ApiError, aiohttp.ClientError) as error:  # the next pass tries again
                        log.info("local node: %s", error)
                    await asyncio.sleep(self._interval)
            finally:
                await asyncio.gather(*self._stopping.values(), return_exceptions=True)
                await asyncio.gather(*(runner.stop(self._max_grace_s) for runner in self._runners.values() if runner))

    async def _sync(self, pods: list[dict[str, Any]], probes: aiohttp.ClientSession) -> None:
        listed = set()
        for pod in pods:
            metadata = pod["metadata"]
            if pod["spec"].get("nodeName") not in (None, self.name):
                continue
            uid = metadata["uid"]
            listed.add(uid)
            if metadata.get("deletionTimestamp"):
                stopping = self._stopping.get(uid)
                if stopping is None or stopping.done() and stopping.exception() is not None:
                    self._stopping[uid] = asyncio.create_task(self._finish(pod))
            elif uid not in self._runners:
                await self._admit(pod, probes)
        for uid in list(self._runners):
            runner = self._runners[uid]
            if uid not in listed:  # gone, maybe without a grace period: stop what still runs
                del self._runners[uid]
                if uid not in self._stopping and runner is not None:
                    self._stopping[uid] = asyncio.create_task(runner.stop(self._max_grace_s))
        for uid, stopping in list(self._stopping.items()):
            if stopping.done() and uid not in listed:
                del self._stopping[uid]

    async def _admit(self, pod: dict[str, Any], probes: aiohttp.ClientSession) -> None:
        metadata, spec = pod["metadata"], pod["spec"]
        path = object_path("v1", "pods", metadata["namespace"], metadata["name"])
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            self._runners[metadata["uid"]] = None  # ran on an earlier node, and finished there
            return
        if spec.get("nodeName") is None:
            await self._client.merge_patch(path, {"spec": {"nodeName": self.name}})
        pod_ip, now = str(next(self._addresses)), _now()
        try:
            launch = launch_of(pod, pod_ip=pod_ip, host_ip=HOST_IP, node_name=self.name, shoal_executable=SHOAL)
        except UnsupportedPod as refusal:
            await self._client.replace_status(path, refused_status(str(refusal), now))
            self._runners[metadata["uid"]] = None  # once its status says so
            return
        container = spec["containers"][0]
        state = PodState(pod_ip=pod_ip, host_ip=HOST_IP, start_time=now, container=container["name"], image=container.get("image", ""))
        runner = PodRunner(
            launch,
            state,
            log_path=self._log_dir / f"{metadata['namespace']}_{metadata['name']}.log",
            base_env=os.environ,
            probes=probes,
            report=lambda status: self._report(path, status),
        )
        self._runners[metadata["uid"]] = runner
        runner.start()

    async def _finish(self, pod: Mapping[str, Any]) -> None:
        """A pod marked for deletion: stop its process, then delete it for good."""
        metadata = pod["metadata"]
        runner = self._runners.get(metadata["uid"])
        if runner is not None:
            grace = metadata.get("deletionGracePeriodSeconds", self._max_grace_s)
            await runner.stop(min(grace, self._max_grace_s))
        await self._client.delete(object_path("v1", "pods", metadata["namespace"], metadata["name"]), grace_seconds=0)

    async def _report(self, path: str, status: dict[str, Any]) -> None:
        try:
            await self._client.replace_status(path, status)
        except (ApiError, aiohttp.ClientError) as error:  # e.g. the pod was deleted meanwhile
            log.info("local node: status of %s not written: %s", path, error)


def _now() -> str:
    return timestamp(datetime.datetime.now(datetime.UTC))


async def _run_until_stopped(args: argparse.Namespace) -> None:
    async with aiohttp.ClientSession() as session:
        node = asyncio.create_task(LocalNode(ApiClient(session, server_of(args.kubeconfig)), log_dir=args.log_dir, name=args.name, subnet=args.subnet).run())
        for signum in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(signum, node.cancel)
        await asyncio.gather(node, return_exceptions=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the emulated cluster's pods as local processes until SIGTERM or Ctrl-C.")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--log-dir", type=Path, required=True, help="one <namespace>_<pod>.log per pod")
    parser.add_argument("--name", default="local-node", help="the node's name (spec.nodeName of its pods)")
    parser.add_argument("--subnet", default="127.0.0.0/16", help="pod addresses come from here, after the first")
    asyncio.run(_run_until_stopped(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
