"""Running routers for tests: in this process on an event loop of its own thread (to reach inside:
feed endpoints, read state), or as a real `shoal router --config` process (to measure its memory).
Configs are built from dicts as the config file would hold them, with free ports."""

import asyncio
import dataclasses
import json
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

from shoal.router.app import Router
from shoal.router.config import RouterConfig, hash_api_key, parse_config
from shoal.router.dev import wait_until_ready
from tests.runtime.server_process import free_port

KEYS = {"sk-test-quiet": "quiet", "sk-test-noisy": "noisy", "sk-test-batch": "batchy"}
TENANTS = [
    {"name": "quiet"},
    {"name": "noisy", "max_concurrent": 2, "tokens_per_minute": 600},
    {"name": "batchy", "default_qos": "batch"},
]


def pool(name: str, revisions: dict[str, list], model: str | None = None, **settings) -> dict:
    """A pool entry; revisions map names to runtimes (anything with .target and .metrics_url)."""
    return {
        "name": name,
        "model": model or name,
        "stable": settings.pop("stable", next(iter(revisions), "stable")),
        "revisions": {
            r: {"endpoints": [{"target": e.target, "metrics_url": e.metrics_url} for e in es]}
            for r, es in revisions.items()
        },
        **settings,
    }


def config_dict(pools: list[dict], **top) -> dict:
    return {
        "listen": {"host": "127.0.0.1", "port": 0},
        "admin": {"host": "127.0.0.1", "port": 0},
        "grpc": {"host": "127.0.0.1", "port": 0},
        "tenants": TENANTS,
        "scrape_interval_s": 0.2,
        "control_interval_s": 0.1,
        "pools": pools,
        **top,
    }


def make_config(pools: list[dict], **top) -> RouterConfig:
    config = parse_config(config_dict(pools, **top))
    return dataclasses.replace(config, api_keys={hash_api_key(k): t for k, t in KEYS.items()})


class LoopThread:
    """An event loop running in a thread: servers live here while the test drives them."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-loop", daemon=True)
        self.thread.start()

    def run(self, coroutine, timeout_s: float = 120):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    def call(self, function, *args):
        """Runs a plain function on the loop's thread (where the router's state lives)."""

        async def wrapper():
            return function(*args)

        return self.run(wrapper())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class RouterInThread:
    def __init__(self, loop: LoopThread, config: RouterConfig, source=None):
        self.loop = loop
        self.router = Router(config, source=source)
        loop.run(self.router.start())

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.router.http_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.router.admin_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.router.grpc_port}"

    def stop(self) -> None:
        self.loop.run(self.router.stop(grace_s=1.0))


class RouterProcess:
    """`python -m shoal router --config FILE` on free ports, with the test keys in a key file."""

    def __init__(self, pools: list[dict], **top):
        self.port, self.admin_port, self.grpc_port = free_port(), free_port(), free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="shoal-router-"))
        (self.dir / "keys.yaml").write_text(json.dumps({"keys": [{"key": k, "tenant": t} for k, t in KEYS.items()]}))
        config = config_dict(pools, **top)
        config["auth"] = {"api_keys_file": "keys.yaml"}
        config["listen"]["port"], config["admin"]["port"], config["grpc"]["port"] = (
            self.port,
            self.admin_port,
            self.grpc_port,
        )
        (self.dir / "router.yaml").write_text(json.dumps(config))
        self.log = open(self.dir / "router.log", "w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shoal",
                "router",
                "--config",
                str(self.dir / "router.yaml"),
                "--log-level",
                "WARNING",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def logs(self) -> str:
        return (self.dir / "router.log").read_text()

    def wait_ready(self, timeout_s: float = 60) -> "RouterProcess":
        failure = wait_until_ready(f"{self.base_url}/ready", self.process, timeout_s, poll_s=0.1)
        if failure is not None:
            raise RuntimeError(f"{failure}:\n{self.logs()}")
        return self

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.process.pid}/status") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        return kib * 1024

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


def get_json(url: str, method: str = "GET", body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
