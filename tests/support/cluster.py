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
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.certificates import Identity
from tests.support.control_plane import ControlPlane, ControlPlaneError, tail

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
        """kubectl as the admin, blocking (set-up and tear-down; async tests use support.kubectl)."""
        result = subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args], input=stdin, capture_output=True, text=True, timeout=120)  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    def create_namespace(self, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.plane.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})  # fmt: skip
        return name

    def delete_namespace(self, name: str) -> None:
        """Deleted in the background: the namespace controller finishes it (and the node its pods)."""
        self.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def install_crds(plane: ControlPlane) -> None:
    for path in CRD_FILES:
        subprocess.run(["kubectl", "--kubeconfig", str(plane.admin_kubeconfig), "apply", "-f", str(path)], check=True, capture_output=True)  # fmt: skip
        subprocess.run(["kubectl", "--kubeconfig", str(plane.admin_kubeconfig), "wait", "--for=condition=Established", "-f", str(path), "--timeout=60s"], check=True, capture_output=True)  # fmt: skip


@contextlib.contextmanager
def running_node(plane: ControlPlane, directory: Path, *, name: str = NODE_NAME) -> Iterator[tuple[Path, Path]]:
    """The local node as a process, logging in as system:node:<name>; yields (pod logs, its log)
    once the Node is Ready (no not-ready taint left, so the scheduler binds pods to it)."""
    _, kubeconfig = plane.client_access(f"node-{name}", Identity(f"system:node:{name}", ("system:nodes",)))
    pod_logs, log = directory / "pod-logs", directory / f"{name}.log"
    command = [sys.executable, "-m", "tests.support.local_node", "--kubeconfig", str(kubeconfig), "--log-dir", str(pod_logs), "--name", name, "--api-server-port", str(plane.api_port)]  # fmt: skip
    with open(log, "ab") as output:
        process = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
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
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", []))
            if ready and not node["spec"].get("taints"):
                return
        time.sleep(0.2)
    raise ControlPlaneError(f"node {name} not schedulable within {READY_TIMEOUT_S:g}s: {json.dumps(node)[:2000]}\n{tail(log)}")


@contextlib.contextmanager
def running_cluster(directory: Path) -> Iterator[Cluster]:
    with ControlPlane.start(directory / "control-plane") as plane:
        install_crds(plane)
        with running_node(plane, directory) as (pod_logs, node_log):
            yield Cluster(plane, pod_logs, node_log)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the test cluster (control plane and local node) until SIGTERM or Ctrl-C.")
    parser.add_argument("--dir", type=Path, required=True, help="for the control plane's files and the pods' logs")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with running_cluster(args.dir) as cluster:
        print(f"cluster up in {time.monotonic() - started:.1f}s: kubeconfig {cluster.kubeconfig}, pod logs in {cluster.pod_logs}", flush=True)  # fmt: skip
        stopped: list[int] = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda number, _: stopped.append(number))
        while not stopped:
            time.sleep(0.5)


if __name__ == "__main__":
    main()
