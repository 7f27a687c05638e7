"""The emulated cluster for tests: the API server, the Deployment controller and the local node,
together in this process (the pods' processes are separate, as they would be anyway).

    async with emulated_cluster(tmp_path) as cluster:
        subprocess.run(["kubectl", "--kubeconfig", cluster.kubeconfig, "apply", ...])
        assert cluster.api.objects["shoal.dev/v1alpha1/modelpools", "default", "x"] >= {...}

Or as one process, for an end-to-end test that starts the whole cluster on its own:
`python -m tests.support.emulated_cluster --dir DIR` (DIR/kubeconfig, DIR/pod-logs/).
"""

import argparse
import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.support.api_client import ApiClient
from tests.support.deployment_controller import run_deployment_controller
from tests.support.emulated_api import EmulatedApiServer, Validator, crd_files, serving
from tests.support.kubeconfig import write_kubeconfig
from tests.support.local_node import LocalNode


@dataclass(frozen=True)
class EmulatedCluster:
    api: EmulatedApiServer  # its objects, with their history, for assertions
    url: str
    kubeconfig: Path
    pod_logs: Path  # <namespace>_<pod>.log for each pod the node ran
    client: ApiClient


@contextlib.asynccontextmanager
async def emulated_cluster(
    directory: Path,
    *,
    validators: Mapping[str, Validator] | None = None,
    node_subnet: str = "127.0.0.0/16",
    port: int = 0,
) -> AsyncIterator[EmulatedCluster]:
    """A cluster serving the CRDs of crds/; on exit the node stops every pod's process. A
    controller or node that crashed meanwhile fails the block (its error is raised)."""
    api = EmulatedApiServer(validators=validators or {})
    async with serving(api, port=port) as url, aiohttp.ClientSession() as session:
        await api.create_crds(crd_files())
        client = ApiClient(session, url)
        pod_logs = directory / "pod-logs"
        cluster = EmulatedCluster(api, url, write_kubeconfig(directory / "kubeconfig", url), pod_logs, client)
        node = LocalNode(client, log_dir=pod_logs, subnet=node_subnet)
        tasks = [
            asyncio.create_task(run_deployment_controller(client), name="deployment controller"),
            asyncio.create_task(node.run(), name="local node"),
        ]
        try:
            yield cluster
        finally:
            crashed = [task for task in tasks if task.done() and not task.cancelled() and task.exception()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if crashed:
                raise RuntimeError(f"the {crashed[0].get_name()} crashed") from crashed[0].exception()


async def _run_until_stopped(directory: Path, port: int) -> None:
    async with emulated_cluster(directory, port=port) as cluster:
        print(f"emulated cluster on {cluster.url}, kubeconfig {cluster.kubeconfig}, pod logs in {cluster.pod_logs}", flush=True)
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the emulated cluster until SIGTERM or Ctrl-C.")
    parser.add_argument("--dir", type=Path, required=True, help="for the kubeconfig and the pods' logs")
    parser.add_argument("--port", type=int, default=0, help="the API's port (0: a free one)")
    args = parser.parse_args(argv)
    asyncio.run(_run_until_stopped(args.dir, args.port))


if __name__ == "__main__":
    main()
