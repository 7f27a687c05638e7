"""A real Kubernetes control plane for tests, in the manner of controller-runtime's envtest: etcd,
kube-apiserver, kube-controller-manager and kube-scheduler, built from the official Go modules by
`make k8s` (tests/support/k8s_binaries/), run as processes on 127.0.0.1 with their own PKI.

The API server runs with RBAC (and the Node authorizer for the local node), the default admission
plugins, and service-account tokens; the controller manager with the controllers a pool's life
needs (Deployments, ReplicaSets, garbage collection, EndpointSlices, namespaces, service accounts,
node lifecycle), each under its own service account; the scheduler binds pods to nodes. There is no
kubelet: tests/support/local_node.py stands in for one.

    with ControlPlane.start(tmp_dir) as plane:
        subprocess.run(["kubectl", "--kubeconfig", plane.admin_kubeconfig, "get", "ns"])

By hand: `python -m tests.support.control_plane --dir DIR` (DIR/admin.kubeconfig; Ctrl-C stops it).
"""

import argparse
import contextlib
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.runtime.server_process import free_port
from tests.support.certificates import CertificateAuthority, Identity, signing_key_pair
from tests.support.kubeconfig import ClusterAccess, write_kubeconfig

BUILD_SCRIPT = Path(__file__).parent / "k8s_binaries" / "build.sh"
SERVICE_CIDR = "10.0.0.0/24"  # the `kubernetes` Service gets 10.0.0.1; nothing routes it here
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
CONTROLLERS = (
    "deployment",
    "replicaset",
    "garbagecollector",
    "endpointslice",
    "endpoint",
    "namespace",
    "serviceaccount",
    "serviceaccount-token",
    "root-ca-cert-publisher",
    "nodelifecycle",
    "podgc",
)
SERVICE_SUFFIXES = ("", ".default", ".default.svc", ".default.svc.cluster.local")
# Every request a service account outside kube-system makes (the controllers' own are left out),
# without bodies: what the RBAC tests compare with the roles.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "userGroups": ["system:serviceaccounts:kube-system"]},
        {"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
        {"level": "None"},
    ],
}
START_TIMEOUT_S = 90.0
STOP_GRACE_S = 5.0


def binaries_dir() -> Path:
    """Where `make k8s` put the binaries ($SHOAL_K8S_BIN wins)."""
    if "SHOAL_K8S_BIN" in os.environ:
        return Path(os.environ["SHOAL_K8S_BIN"])
    return Path(
        subprocess.run(["bash", str(BUILD_SCRIPT), "--path"], capture_output=True, text=True, check=True).stdout.strip()
    )


class ControlPlaneError(RuntimeError):
    pass


@dataclass
class _Component:
    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as output:
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise ControlPlaneError(f"{self.name} exited with {self.process.returncode}:\n{tail(self.log)}")


@dataclass
class ControlPlane:
    directory: Path
    api_port: int
    ca: CertificateAuthority
    components: dict[str, _Component] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.admin, self.admin_kubeconfig = self.client_access(
            "admin", Identity("shoal-test-admin", ("system:masters",))
        )

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @classmethod
    @contextlib.contextmanager
    def start(
        cls,
        directory: Path,
        *,
        api_hosts: tuple[str, ...] = (),
        binaries: Path | None = None,
        before_controllers: Callable[["ControlPlane"], None] | None = None,
    ) -> Iterator["ControlPlane"]:
        """Start every component and wait until the API server is ready, the default namespace's
        service account exists (pods can be created) and the scheduler and controllers run.
        `api_hosts`: further addresses the API server's certificate must be valid for (where pods
        reach it). `before_controllers(plane)` runs once the API server is ready and before the
        controller manager starts: CRDs installed there are known to the garbage collector from
        its start (it rediscovers resources only every 30 s, and until then leaves the
        dependents of a deleted custom object alone)."""
        plane = cls._prepare(directory, binaries or binaries_dir(), api_hosts)
        try:
            for name in ("etcd", "kube-apiserver"):
                plane.components[name].start()
            plane.wait_ready()
            if before_controllers is not None:
                before_controllers(plane)
            for name in ("kube-controller-manager", "kube-scheduler"):
                plane.components[name].start()
            plane._wait_for_service_account("default", "default")
            yield plane
        finally:
            for component in reversed(plane.components.values()):
                component.stop()

    @classmethod
    def _prepare(cls, directory: Path, binaries: Path, api_hosts: tuple[str, ...]) -> "ControlPlane":
        for binary in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
            if not (binaries / binary).exists():
                raise ControlPlaneError(f"{binaries / binary} is missing: run `make k8s` first")
        directory.mkdir(parents=True, exist_ok=True)
        pki, logs = directory / "pki", directory / "logs"
        logs.mkdir(exist_ok=True)
        ca = CertificateAuthority(pki)
        api_port, etcd_port, etcd_peer_port = free_port(), free_port(), free_port()
        hosts = (
            "127.0.0.1",
            "localhost",
            "10.0.0.1",
            *api_hosts,
            *(f"kubernetes{suffix}" for suffix in SERVICE_SUFFIXES),
        )
        serving = ca.serving("kube-apiserver", hosts=hosts)
        audit_policy = directory / "audit-policy.yaml"
        audit_policy.write_text(json.dumps(AUDIT_POLICY))
        accounts = signing_key_pair(pki, "service-accounts")
        plane = cls(directory, api_port, ca)
        _, controller_manager = plane.client_access("controller-manager", Identity("system:kube-controller-manager"))
        _, scheduler = plane.client_access("scheduler", Identity("system:kube-scheduler"))
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        argv = {
            "etcd": [
                str(binaries / "etcd"),
                "--data-dir",
                str(directory / "etcd"),
                "--name",
                "shoal-test",
                "--listen-client-urls",
                etcd_url,
                "--advertise-client-urls",
                etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{etcd_peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{etcd_peer_port}",
                "--initial-cluster",
                f"shoal-test=http://127.0.0.1:{etcd_peer_port}",
                "--unsafe-no-fsync",  # a test's data need not survive a power cut
                "--log-level",
                "warn",
            ],
            "kube-apiserver": [
                str(binaries / "kube-apiserver"),
                "--etcd-servers",
                etcd_url,
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
                "--secure-port",
                str(api_port),
                "--tls-cert-file",
                str(serving.cert),
                "--tls-private-key-file",
                str(serving.key),
                "--client-ca-file",
                str(ca.cert),
                "--authorization-mode",
                "Node,RBAC",
                "--service-account-issuer",
                SERVICE_ACCOUNT_ISSUER,
                "--service-account-key-file",
                str(accounts.cert),
                "--service-account-signing-key-file",
                str(accounts.key),
                "--service-cluster-ip-range",
                SERVICE_CIDR,
                "--allow-privileged=true",
                "--profiling=false",
                "--cert-dir",
                str(pki),
                "--audit-policy-file",
                str(audit_policy),
                "--audit-log-path",
                str(logs / "audit.log"),
                "--audit-log-format",
                "json",
            ],
            "kube-controller-manager": [
                str(binaries / "kube-controller-manager"),
                "--kubeconfig",
                str(controller_manager),
                "--authentication-kubeconfig",
                str(controller_manager),
                "--authorization-kubeconfig",
                str(controller_manager),
                "--controllers",
                ",".join(CONTROLLERS),
                "--use-service-account-credentials=true",
                "--service-account-private-key-file",
                str(accounts.key),
                "--root-ca-file",
                str(ca.cert),
                "--leader-elect=false",
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                str(free_port()),
                "--cert-dir",
                str(pki / "controller-manager"),
                "--profiling=false",
            ],
            "kube-scheduler": [
                str(binaries / "kube-scheduler"),
                "--kubeconfig",
                str(scheduler),
                "--authentication-kubeconfig",
                str(scheduler),
                "--authorization-kubeconfig",
                str(scheduler),
                "--leader-elect=false",
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                str(free_port()),
                "--cert-dir",
                str(pki / "scheduler"),
                "--profiling=false",
            ],
        }
        plane.components = {name: _Component(name, command, logs / f"{name}.log") for name, command in argv.items()}
        return plane

    def client_access(self, name: str, identity: Identity) -> tuple[ClusterAccess, Path]:
        """A client certificate for `identity`, and a kubeconfig that uses it."""
        pair = self.ca.client(name, identity)
        access = ClusterAccess(server=self.server, ca_file=self.ca.cert, cert_file=pair.cert, key_file=pair.key)
        return access, write_kubeconfig(self.directory / f"{name}.kubeconfig", access)

    def service_account_access(
        self, namespace: str, name: str, *, kubeconfig: Path | None = None, expiration_s: int = 24 * 3600
    ) -> tuple[ClusterAccess, Path]:
        """A fresh token of the service account (TokenRequest API), and a kubeconfig that uses it
        (at `kubeconfig`, else one per account in the plane's folder): what a pod running as that
        account would hold, with exactly the account's RBAC."""
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": expiration_s},
        }
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"
        token = self.request("POST", path, request)["status"]["token"]
        access = ClusterAccess(server=self.server, ca_file=self.ca.cert, token=token)
        return access, write_kubeconfig(
            kubeconfig or self.directory / f"sa-{namespace}-{name}.kubeconfig", access, namespace
        )

    def request(self, method: str, path: str, body: object | None = None) -> dict:
        """One admin call to the API server (for set-up; tests use kubectl or their clients)."""
        data = json.dumps(body).encode() if body is not None else None
        call = urllib.request.Request(
            self.server + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(call, context=self.admin.ssl_context(), timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """kubectl as the admin, blocking (set-up and tear-down; async tests use support.kubectl)."""
        result = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.admin_kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    def create_namespace(self, prefix: str = "t") -> str:
        """A namespace of a fresh name starting with prefix."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.request(
            "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        )
        return name

    def audit_events(self, user: str) -> list[dict]:
        """The audit log's ResponseComplete events of one user (e.g.
        system:serviceaccount:shoal-system:shoal-operator), oldest first."""
        log = self.directory / "logs" / "audit.log"
        events = (json.loads(line) for line in log.read_text().splitlines() if line.strip()) if log.exists() else ()
        return [e for e in events if e.get("user", {}).get("username") == user and e.get("stage") == "ResponseComplete"]

    def restart_api_server(self) -> None:
        """Stop kube-apiserver and start it again on the same port and etcd: watches break, and
        clients must resume them."""
        api_server = self.components["kube-apiserver"]
        api_server.stop()
        api_server.start()
        self.wait_ready()

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        context = self.admin.ssl_context()
        last = ""
        while time.monotonic() < deadline:
            for component in self.components.values():
                component.check_alive()
            try:
                with urllib.request.urlopen(f"{self.server}/readyz", context=context, timeout=5) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError, ssl.SSLError) as error:
                last = str(error)
            time.sleep(0.2)
        raise ControlPlaneError(
            f"kube-apiserver not ready within {timeout_s:g}s ({last}):\n{tail(self.components['kube-apiserver'].log)}"
        )

    def _wait_for_service_account(self, namespace: str, name: str, timeout_s: float = START_TIMEOUT_S) -> None:
        """The serviceaccount controller makes each namespace's `default` account; until it has,
        admission refuses pods there."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for component in self.components.values():
                component.check_alive()
            with contextlib.suppress(urllib.error.HTTPError):
                self.request("GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}")
                return
            time.sleep(0.2)
        raise ControlPlaneError(
            f"no service account {namespace}/{name} within "
            f"{timeout_s:g}s:\n{tail(self.components['kube-controller-manager'].log)}"
        )


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"({path} was not written)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the test control plane until SIGTERM or Ctrl-C.")
    parser.add_argument(
        "--dir", type=Path, required=True, help="for etcd's data, the PKI, logs and DIR/admin.kubeconfig"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    with ControlPlane.start(args.dir) as plane:
        print(
            f"control plane on {plane.server} in {time.monotonic() - started:.1f}s; kubeconfig "
            f"{plane.admin_kubeconfig}",
            flush=True,
        )
        stopped = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopped.append(True))
        while not stopped:
            time.sleep(0.5)
            for component in plane.components.values():
                component.check_alive()


if __name__ == "__main__":
    main()
