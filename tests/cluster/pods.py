"""Pods for the local node's tests: small Python programs as their containers (the node runs
`python` as this venv's interpreter), and ways to wait for what the node reports."""

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from tests.support.api_client import ApiClient, ApiError
from tests.support.api_paths import object_path
from tests.support.cluster import Cluster
from tests.support.polling import eventually

# Answers GET / with the pod's name, /ready with 200 and /health with $HEALTH (200 by default).
HTTP_SERVER = """
import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status = int(os.environ.get("HEALTH", "200")) if self.path == "/health" else 200
        body = os.environ.get("POD_NAME", "").encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
"""
SLEEP_SCRIPT = "import time; time.sleep(300)"
POD_NAME_ENV = {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}


def pod(name: str, script: str, **spec: Any) -> dict[str, Any]:
    """A pod whose one container runs `python -c script`; `container` in spec adds to it."""
    container = {"name": "main", "image": "python:3", "command": ["python", "-c", script], **spec.pop("container", {})}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **spec.pop("metadata", {})},
        "spec": {"containers": [container], **spec},
    }


def pods_path(namespace: str, name: str | None = None) -> str:
    return object_path("v1", "pods", namespace, name)


async def create(api: ApiClient, path: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Create; in a namespace just made, admission refuses pods until the service account
    controller has made its `default` account, so that is waited for."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return await api.create(path, obj)
        except ApiError as error:
            if "serviceaccount" not in str(error) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def read_pod(api: ApiClient, namespace: str, name: str) -> dict[str, Any]:
    try:
        return await api.get(pods_path(namespace, name))
    except ApiError as error:
        if error.status == 404:
            return {}
        raise


async def wait_pod(
    api: ApiClient, namespace: str, name: str, accept, *, timeout: float = 30, what: str = ""
) -> dict[str, Any]:
    return await eventually(
        lambda: read_pod(api, namespace, name),
        lambda p: bool(p) and accept(p),
        timeout=timeout,
        what=what or f"pod {name}",
    )


def container_status(obj: dict[str, Any]) -> dict[str, Any]:
    return ((obj.get("status") or {}).get("containerStatuses") or [{}])[0]


def phase(obj: dict[str, Any]) -> str:
    return (obj.get("status") or {}).get("phase", "")


def pid_of(obj: dict[str, Any]) -> int:
    return int(container_status(obj)["containerID"].removeprefix("local-process://"))


def is_running(pid: int) -> bool:
    """Running, that is: neither gone nor a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def log_of(cluster: Cluster, namespace: str, name: str) -> str:
    path = cluster.pod_logs / f"{namespace}_{name}.log"
    return path.read_text() if path.exists() else ""


def printed_json(cluster: Cluster, namespace: str, name: str) -> Any:
    """The last line the pod printed, as JSON."""
    return json.loads(log_of(cluster, namespace, name).strip().splitlines()[-1])
