"""The test cluster: the real control plane (control_plane.py) serving the CRDs of crds/, and the
local node (local_node.py, a stand-in kubelet whose pods are processes, not containers) as a
process of its own.

    with running_cluster(tmp_dir) as cluster:
        subprocess.run(["kubectl", "--kubeconfig", cluster.kubeconfig, "apply", "-f", ...])

By hand: `python -m tests.support.cluster --dir DIR` (DIR/control-plane/admin.kubeconfig,
DIR/pod-logs/; Ctrl-C stops it).
"""

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.certificates import Identity
from tests.support.control_plane import ControlPlane, ControlPlaneError, tail
from tests.support.operator_account import install_operator_rbac, token
from tests.support.pod_network import Reservation, reserved_pod_network

ROOT = Path(__file__).resolve().parents[2]
CRD_FILES = (ROOT / "crds" / "modelpool.yaml",)
NODE_NAME = "local-node"
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Cluster:
    plane: ControlPlane
    pod_logs: Path  # <namespace>_<pod>.log for each pod the local node ran
    node_log: Path
    node_name: str = NODE_NAME

    @property
    def kubeconfig(self) -> Path:
        """The admin's (system:masters); the operator and router get service-account tokens."""
        return self.plane.admin_kubeconfig

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        return self.plane.kubectl(*args, stdin=stdin, check=check)

    def create_namespace(self, prefix: str = "t") -> str:
        return self.plane.create_namespace(prefix)

    def operator_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig at `path` holding a fresh token of the operator's ServiceAccount, bound
        to exactly the roles crds/rbac.yaml grants (applied here; applying again changes nothing)."""
        install_operator_rbac(self.plane)
        return token(self.plane, path).kubeconfig

    def delete_namespace(self, name: str) -> None:
        """Deleted in the background: the namespace controller finishes it (and the node its pods)."""
        self.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def install_crds(plane: ControlPlane) -> None:
    for path in CRD_FILES:
        for args in (
            ["apply", "-f", str(path)],
            ["wait", "--for=condition=Established", "-f", str(path), "--timeout=60s"],
        ):
            result = subprocess.run(
                ["kubectl", "--kubeconfig", str(plane.admin_kubeconfig), *args], capture_output=True, text=True
            )
            if result.returncode != 0:
                raise ControlPlaneError(f"kubectl {' '.join(args)} exited {result.returncode}:\n{result.stderr}")


@contextlib.contextmanager
def running_node(
    plane: ControlPlane, directory: Path, pod_network: Reservation, *, name: str = NODE_NAME
) -> Iterator[tuple[Path, Path]]:
    """The local node as a process, logging in as system:node:<name>, its pods on the reserved
    network (whose gateway the API server's certificate names: ControlPlane.start's api_hosts);
    yields (pod logs, its log) once the Node is Ready (no not-ready taint left, so the scheduler
    binds pods to it)."""
    _, kubeconfig = plane.client_access(f"node-{name}", Identity(f"system:node:{name}", ("system:nodes",)))
    pod_logs, log = directory / "pod-logs", directory / f"{name}.log"
    command = [
        sys.executable,
        "-m",
        "tests.support.local_node",
        "--kubeconfig",
        str(kubeconfig),
        "--log-dir",
        str(pod_logs),
        "--name",
        name,
        "--api-server-port",
        str(plane.api_port),
        "--pod-cidr",
        pod_network.cidr,
        "--pod-network-lock-fd",
        str(pod_network.lock_fd),
    ]
    with open(log, "ab") as output:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            pass_fds=(pod_network.lock_fd,),
        )
    try:
        _wait_schedulable(plane, name, process, log)
        yield pod_logs, log
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_schedulable(plane: ControlPlane, name: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    node: dict = {}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ControlPlaneError(f"the local node exited with {process.returncode}:\n{tail(log)}")
        with contextlib.suppress(OSError):
            node = plane.request("GET", f"/api/v1/nodes/{name}")
            ready = any(
                c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", [])
            )
            if ready and not node["spec"].get("taints"):
                return
        time.sleep(0.2)
    raise ControlPlaneError(
        f"node {name} not schedulable within {READY_TIMEOUT_S:g}s: {json.dumps(node)[:2000]}\n{tail(log)}"
    )


@contextlib.contextmanager
def running_cluster(directory: Path) -> Iterator[Cluster]:
    # Pods reach the API server at their network's gateway (tests/support/api_proxy.py); a second
    # session on this machine gets a pod network of its own.
    with (
        reserved_pod_network() as pod_network,
        ControlPlane.start(
            directory / "control-plane", api_hosts=(pod_network.gateway,), before_controllers=install_crds
        ) as plane,
    ):
        with running_node(plane, directory, pod_network) as (pod_logs, node_log):
            yield Cluster(plane, pod_logs, node_log)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Run the test cluster (control plane and local node) until SIGTERM or Ctrl-C."
    )
    parser.add_argument("--dir", type=Path, required=True, help="for the control plane's files and the pods' logs")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with running_cluster(args.dir) as cluster:
        print(
            f"cluster up in {time.monotonic() - started:.1f}s: kubeconfig {cluster.kubeconfig}, pod logs in "
            f"{cluster.pod_logs}",
            flush=True,
        )
        stopped: list[int] = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda number, _: stopped.append(number))
        while not stopped:
            time.sleep(0.5)


if __name__ == "__main__":
    main()
