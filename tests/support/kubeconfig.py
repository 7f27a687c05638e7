"""A kubeconfig that points kubectl, kopf and clients at the emulated API server, and the way back
from such a file to the server's URL."""

from pathlib import Path

import yaml

_NAME = "emulated"


def write_kubeconfig(path: Path, server: str, namespace: str = "default") -> Path:
    """One cluster, user and context, all named "emulated". The user carries a token only because
    kubeconfig readers (kopf's among them) expect a user; the emulator checks no credentials."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": _NAME, "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": _NAME, "user": {"token": "emulated"}}],
        "contexts": [{"name": _NAME, "context": {"cluster": _NAME, "user": _NAME, "namespace": namespace}}],
        "current-context": _NAME,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def server_of(path: Path) -> str:
    """The server URL of the kubeconfig's current context."""
    config = yaml.safe_load(path.read_text())
    context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    return next(c["cluster"]["server"] for c in config["clusters"] if c["name"] == context["cluster"])
