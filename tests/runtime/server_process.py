"""A real `shoal runtime` process on loopback, for end-to-end tests."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import grpc

from shoal.v1 import runtime_pb2 as pb
from shoal.v1 import runtime_pb2_grpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RuntimeProcess:
    def __init__(self, *flags: str, env: dict[str, str] | None = None):
        self.port, self.metrics_port = free_port(), free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="shoal-runtime-", suffix=".log", delete=False)
        command = [
            sys.executable,
            "-m",
            "shoal",
            "runtime",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--metrics-port",
            str(self.metrics_port),
            *flags,
        ]
        self.process = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def logs(self) -> str:
        with open(self.log.name) as f:
            return f.read()

    def wait_ready(self, timeout_s: float = 300) -> "RuntimeProcess":
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"runtime exited with {self.process.returncode}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/ready", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"runtime not ready after {timeout_s}s:\n{self.logs()}")

    def stub(self) -> runtime_pb2_grpc.RuntimeStub:
        return runtime_pb2_grpc.RuntimeStub(grpc.insecure_channel(self.target))

    def stats(self) -> pb.RuntimeStats:
        return self.stub().GetStats(pb.GetStatsRequest())

    def scrape(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            return response.read().decode()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        os.unlink(self.log.name)
        return self.process.returncode
