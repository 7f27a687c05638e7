"""The system the load suite drives: `shoal dev` (a runtime on the embedded model, the router in front
of it) with the suite's own router config, on free ports; and the tenants that config knows.

The config (written beside a key file into a work directory) has three tenants, so a trace can mix
their traffic and the report can break it down:

    chat    realtime by default, no limits of its own
    agent   realtime by default, max_concurrent 2: its bursts meet the tenant limit (429, limit "requests")
    bulk    batch by default: shed first when realtime queues (429, "overloaded")

and a pool whose QoS gate is small enough that a 2-core CPU reaches overload in seconds: 8 requests
in flight to the runtime, 16 realtime and 8 batch waiting at the router, at most 15 s in the queue.
"""

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from shoal.embedded_model import EMBEDDED_MODEL_NAME
from shoal.router.dev import wait_until_ready
from tests.runtime.server_process import free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Tenant:
    name: str
    key: str
    default_qos: str
    max_concurrent: int | None = None


TENANTS = (
    Tenant("chat", "sk-load-chat", "realtime"),
    Tenant("agent", "sk-load-agent", "realtime", max_concurrent=2),
    Tenant("bulk", "sk-load-bulk", "batch"),
)
QOS = {
    "max_concurrency_per_endpoint": 8,
    "realtime_queue": 16,
    "batch_queue": 8,
    "max_queue_wait_s": 15.0,
    "realtime_ttft_target_s": 2.0,
}


def suite_keys() -> dict[str, str]:
    """Tenant name -> API key, for the system this module starts."""
    return {t.name: t.key for t in TENANTS}


def tokenizer_dir() -> Path:
    """The embedded model's HF directory (converted from its GGUF file once; offline): its tokenizer."""
    from shoal.runtime.model.loader import materialize, resolve_model_source

    return materialize(resolve_model_source("default")).directory


def router_config(http_port: int, admin_port: int, grpc_port: int) -> dict:
    tenants = [
        {"name": t.name, "default_qos": t.default_qos}
        | ({"max_concurrent": t.max_concurrent} if t.max_concurrent else {})
        for t in TENANTS
    ]
    return {
        "listen": {"host": "127.0.0.1", "port": http_port},
        "admin": {"host": "127.0.0.1", "port": admin_port},
        "grpc": {"host": "127.0.0.1", "port": grpc_port},
        "scrape_interval_s": 1.0,
        "auth": {"api_keys_file": "keys.json"},
        "tenants": tenants,
        "pools": [
            {
                "name": "load",
                "model": EMBEDDED_MODEL_NAME,
                "stable": "stable",
                # `shoal dev` points the stable revision at the runtime it starts.
                "revisions": {"stable": {"endpoints": [{"target": "127.0.0.1:1"}]}},
                "qos": QOS,
            }
        ],
    }


class LoadSystem:
    """`python -m shoal dev --config <the suite's config>` on free ports; its output in workdir/dev.log.

    Use as a context manager: entering waits until the router's /ready answers 200 (the runtime has
    loaded the model and the router sees it), leaving sends SIGTERM (the router drains, then stops the
    runtime) and waits."""

    def __init__(self, workdir: Path, log_level: str = "WARNING"):
        self.workdir = workdir
        self.log_level = log_level
        self.http_port, self.admin_port = free_port(), free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def admin_url(self) -> str:
        """The router's admin port: its /metrics (no token needed) is there, not on the public one."""
        return f"http://127.0.0.1:{self.admin_port}"

    def __enter__(self) -> "LoadSystem":
        self.workdir.mkdir(parents=True, exist_ok=True)
        keys = {"keys": [{"key": t.key, "tenant": t.name} for t in TENANTS]}
        (self.workdir / "keys.json").write_text(json.dumps(keys))
        config = router_config(self.http_port, self.admin_port, free_port())
        (self.workdir / "router.json").write_text(json.dumps(config, indent=2))
        tokenizer_dir()  # convert the embedded model once, here, rather than inside the runtime's start-up
        command = [
            sys.executable,
            "-m",
            "shoal",
            "dev",
            "--config",
            str(self.workdir / "router.json"),
            "--port",
            str(self.http_port),
            "--runtime-port",
            str(free_port()),
            "--runtime-metrics-port",
            str(free_port()),
            "--log-level",
            self.log_level,
        ]
        with open(self.workdir / "dev.log", "ab") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        failure = wait_until_ready(f"{self.url}/ready", self.process, timeout_s=300)
        if failure is not None:
            self.__exit__()
            raise RuntimeError(f"`shoal dev` did not get ready: {failure}\n{self.log_tail()}")
        return self

    def __exit__(self, *_) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=90)  # the router drains (10 s at most), then the runtime (40 s at most)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        path = self.workdir / "dev.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
