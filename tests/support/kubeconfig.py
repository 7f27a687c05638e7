"""How a client reaches the test control plane's API server (server URL, CA, and a client
certificate or a bearer token), written as a kubeconfig for kubectl, helm and kopf, and read back
into an ssl context and headers for the tests' own aiohttp client."""

import ssl
from dataclasses import dataclass
from pathlib import Path

import yaml

_NAME = "shoal-test"


@dataclass(frozen=True)
class ClusterAccess:
    server: str
    ca_file: Path
    cert_file: Path | None = None  # a client certificate (admin, node, controllers)...
    key_file: Path | None = None
    token: str | None = None  # ...or a service account's token

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if self.cert_file is not None and self.key_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def write_kubeconfig(path: Path, access: ClusterAccess, namespace: str = "default") -> Path:
    user: dict[str, str] = {}
    if access.cert_file is not None and access.key_file is not None:
        user = {"client-certificate": str(access.cert_file), "client-key": str(access.key_file)}
    if access.token:
        user["token"] = access.token
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": _NAME, "cluster": {"server": access.server, "certificate-authority": str(access.ca_file)}}
        ],
        "users": [{"name": _NAME, "user": user}],
        "contexts": [{"name": _NAME, "context": {"cluster": _NAME, "user": _NAME, "namespace": namespace}}],
        "current-context": _NAME,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def read_kubeconfig(path: Path) -> ClusterAccess:
    """The access of a kubeconfig written by write_kubeconfig (its current context)."""
    config = yaml.safe_load(path.read_text())
    context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    return ClusterAccess(
        server=cluster["server"],
        ca_file=Path(cluster["certificate-authority"]),
        cert_file=Path(user["client-certificate"]) if "client-certificate" in user else None,
        key_file=Path(user["client-key"]) if "client-key" in user else None,
        token=user.get("token"),
    )
