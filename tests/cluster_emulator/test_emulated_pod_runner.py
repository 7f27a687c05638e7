"""One pod's process under the local node: probes decide readiness, a failing liveness or startup
probe restarts it. A small Python HTTP server stands in for the container (PodRunner runs any
argv; only pod_launch insists on `shoal`), and the statuses it would write are recorded."""

import contextlib
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.pod_launch import Launch, Probe
from tests.support.pod_runner import PodRunner, PodState
from tests.support.polling import eventually

pytestmark = pytest.mark.asyncio

ADDRESS = "127.0.0.9"
# Answers /ready with 200 and /health with 500: ready, but failing its liveness probe.
SERVER = """
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/ready" else 500)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((ADDRESS, 0))
        return s.getsockname()[1]


def recorded(statuses: list[dict]):
    async def read() -> list[dict]:
        return statuses

    return read


def container(statuses: list[dict]) -> dict:
    return statuses[-1]["containerStatuses"][0] if statuses else {}


@contextlib.asynccontextmanager
async def running(launch: Launch, tmp_path, statuses: list[dict]) -> AsyncIterator[PodRunner]:
    """A runner whose status writes are appended to `statuses`."""

    async def record(status: dict) -> None:
        statuses.append(status)

    state = PodState(pod_ip=ADDRESS, host_ip="127.0.0.1", start_time="t0", container="c", image="i")
    async with aiohttp.ClientSession() as probes:
        runner = PodRunner(launch, state, log_path=tmp_path / "pod.log", base_env={}, probes=probes, report=record)
        runner.start()
        yield runner
        await runner.stop(grace_s=5)


async def test_emulated_readiness_probe_makes_the_pod_ready_and_a_failing_liveness_probe_restarts_it(tmp_path):
    port = free_port()
    launch = Launch(
        argv=[sys.executable, "-c", SERVER, ADDRESS, str(port)],
        env={},
        readiness=Probe(port=port, path="/ready", period_s=0.1),
        liveness=Probe(port=port, path="/health", initial_delay_s=0.5, period_s=0.1, failure_threshold=3),
        startup=None,
        restart_policy="Always",
        grace_s=5,
    )
    statuses: list[dict] = []
    async with running(launch, tmp_path, statuses):
        await eventually(recorded(statuses), lambda seen: any(s["containerStatuses"][0]["ready"] for s in seen), what="Ready")
        ready = next(s for s in statuses if s["containerStatuses"][0]["ready"])
        assert {c["type"]: c["status"] for c in ready["conditions"]} == {"PodScheduled": "True", "Initialized": "True", "ContainersReady": "True", "Ready": "True"}
        assert ready["phase"] == "Running" and ready["podIP"] == ADDRESS

        await eventually(recorded(statuses), lambda seen: container(seen).get("restartCount") == 1, what="a restart")
        assert container(statuses)["lastState"]["terminated"]["exitCode"] == 143  # SIGTERM: 128 + 15
        await eventually(recorded(statuses), lambda seen: container(seen)["ready"], what="Ready again after the restart")


async def test_emulated_failing_startup_probe_holds_readiness_back_and_restarts_the_container(tmp_path):
    closed = free_port()
    launch = Launch(
        argv=[sys.executable, "-c", "import time; time.sleep(60)"],
        env={},
        readiness=Probe(port=closed, path=None, period_s=0.1),
        liveness=None,
        startup=Probe(port=closed, path=None, period_s=0.1, failure_threshold=2),
        restart_policy="Always",
        grace_s=5,
    )
    statuses: list[dict] = []
    async with running(launch, tmp_path, statuses):
        await eventually(recorded(statuses), lambda seen: container(seen).get("restartCount") == 1, what="a restart")
        assert not any(s["containerStatuses"][0]["started"] or s["containerStatuses"][0]["ready"] for s in statuses)


async def test_emulated_container_without_a_readiness_probe_is_ready_once_started(tmp_path):
    launch = Launch(argv=[sys.executable, "-c", "import time; time.sleep(60)"], env={}, readiness=None, liveness=None, startup=None, restart_policy="Always", grace_s=5)
    statuses: list[dict] = []
    async with running(launch, tmp_path, statuses):
        await eventually(recorded(statuses), lambda seen: container(seen).get("ready"), what="Ready")
        assert container(statuses)["started"] and "running" in container(statuses)["state"]


async def test_emulated_container_exit_takes_the_processes_it_left_behind(tmp_path):
    leaves_a_child = "import subprocess, sys; print(subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']).pid, flush=True)"
    launch = Launch(argv=[sys.executable, "-c", leaves_a_child], env={}, readiness=None, liveness=None, startup=None, restart_policy="Never", grace_s=5)
    statuses: list[dict] = []
    async with running(launch, tmp_path, statuses):
        await eventually(recorded(statuses), lambda seen: seen and seen[-1]["phase"] == "Succeeded", what="the container done")
        child = int((tmp_path / "pod.log").read_text())
        await eventually(recorded(statuses), lambda _: not alive(child), timeout=2, what="the child killed")


def alive(pid: int) -> bool:
    """Running, that is: neither gone nor a zombie (an orphan waits for init to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
