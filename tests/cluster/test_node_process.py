"""The local node as a process: stopped (SIGTERM), it stops its pods' processes and removes their
network namespaces and its bridge, and exits 0; across an API server restart it resumes its watch
and keeps reporting."""

import asyncio
import signal
import subprocess
import sys
import time

import pytest

from tests.cluster.pods import SLEEP_SCRIPT, create, is_running, log_of, phase, pid_of, pod, pods_path, wait_pod
from tests.support.api_client import ApiClient, ApiError
from tests.support.api_paths import object_path
from tests.support.certificates import Identity
from tests.support.cluster import ROOT, Cluster
from tests.support.pod_network import network_names, reserved_pod_network
from tests.support.polling import eventually

pytestmark = pytest.mark.asyncio

SECOND = "second-node"  # a node of the test's own, beside the session's


async def _links() -> str:
    return subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout


async def _namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout


async def test_a_stopped_node_stops_its_pods_and_removes_its_network(
    cluster: Cluster, api: ApiClient, namespace: str, tmp_path
):
    _, kubeconfig = cluster.plane.client_access(f"node-{SECOND}", Identity(f"system:node:{SECOND}", ("system:nodes",)))
    node_path = object_path("v1", "nodes", name=SECOND)
    with reserved_pod_network() as network:
        names = network_names(network.cidr)
        command = [
            sys.executable,
            "-m",
            "tests.support.local_node",
            "--kubeconfig",
            str(kubeconfig),
            "--log-dir",
            str(tmp_path / "logs"),
            "--name",
            SECOND,
            "--api-server-port",
            str(cluster.plane.api_port),
            "--pod-cidr",
            network.cidr,
            "--pod-network-lock-fd",
            str(network.lock_fd),
        ]
        with open(tmp_path / "node.log", "wb") as output:
            node = await asyncio.create_subprocess_exec(
                *command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, pass_fds=(network.lock_fd,)
            )
        try:
            # Cordoned at once, so the scheduler places nothing here; the test's pod names the node.
            await eventually(
                lambda: _get_or_none(api, node_path), lambda n: n is not None, what="the second Node registered"
            )
            await api.merge_patch(node_path, {"spec": {"unschedulable": True}})
            await create(api, pods_path(namespace), pod("pinned", SLEEP_SCRIPT, nodeName=SECOND))
            running = await wait_pod(
                api, namespace, "pinned", lambda p: phase(p) == "Running", what="the pod running on the second node"
            )
            assert running["status"]["podIP"].startswith(network.cidr.rsplit(".", 1)[0])
            assert names.netns_prefix in await _namespaces() and names.bridge in await _links()

            node.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(node.wait(), 20) == 0, (tmp_path / "node.log").read_text()
            assert not is_running(pid_of(running))
            assert names.netns_prefix not in await _namespaces()
            assert names.bridge not in await _links() and names.veth_prefix not in await _links()
        finally:
            if node.returncode is None:
                node.kill()
                await node.wait()
            await api.delete(pods_path(namespace, "pinned"), grace_seconds=0)
            await api.delete(node_path)


async def test_the_node_resumes_after_an_api_server_restart(cluster: Cluster, api: ApiClient, namespace: str):
    # Ends while the API server is away: its status is written once it is back.
    await create(api, pods_path(namespace), pod("brief", "import time; time.sleep(2)", restartPolicy="Never"))
    await wait_pod(api, namespace, "brief", lambda p: phase(p) == "Running", what="running")
    started = time.monotonic()
    await asyncio.to_thread(cluster.plane.restart_api_server)
    print(f"API server restarted in {time.monotonic() - started:.1f}s")

    await wait_pod(api, namespace, "brief", lambda p: phase(p) == "Succeeded", timeout=20, what="its end reported")
    await create(api, pods_path(namespace), pod("after", "print('after the restart')", restartPolicy="Never"))
    await wait_pod(
        api, namespace, "after", lambda p: phase(p) == "Succeeded", timeout=20, what="a new pod run (the watch resumed)"
    )
    assert "after the restart" in log_of(cluster, namespace, "after")


async def _get_or_none(api: ApiClient, path: str):
    try:
        return await api.get(path)
    except ApiError:
        return None
