"""The emulated API server and the local node as processes of their own, as an e2e runs them."""

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from tests.cluster_emulator.servers import emulated_api
from tests.support.api_paths import object_path
from tests.support.kubectl import kubectl
from tests.support.polling import eventually

pytestmark = pytest.mark.asyncio

REPO = Path(__file__).resolve().parents[2]


async def start(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-m", *args, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)


async def stop(process: asyncio.subprocess.Process) -> int:
    process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.wait(), timeout=15)


async def test_emulated_api_server_process_writes_a_kubeconfig_and_stops_on_sigterm(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    process = await start("tests.support.emulated_api", "--port", "0", "--kubeconfig", str(kubeconfig))
    try:
        banner = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        assert banner.startswith("emulated Kubernetes API on http://127.0.0.1:")
        assert "modelpools.shoal.dev" in await kubectl(kubeconfig, "get", "crd")
    finally:
        assert await stop(process) == 0


async def test_emulated_local_node_process_runs_the_clusters_pods(tmp_path):
    pods = object_path("v1", "pods", "default")
    async with emulated_api(tmp_path) as cluster:
        node = await start("tests.support.local_node", "--kubeconfig", str(cluster.kubeconfig), "--log-dir", str(tmp_path / "logs"))
        try:
            await cluster.client.create(pods, {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i", "command": ["sleep", "1"]}]}})
            [refused] = await eventually(lambda: cluster.client.list(pods), lambda seen: seen[0]["status"]["phase"] == "Failed", timeout=30, what="the node's verdict")
            assert refused["spec"]["nodeName"] == "local-node"
        finally:
            assert await stop(node) == 0
