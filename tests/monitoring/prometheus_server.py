"""Prometheus and promtool for the tests, and a real Prometheus on loopback.

The binaries come from `make prometheus` (Debian's package unpacked under .tools/; `make test` runs
it first and points SHOAL_PROMETHEUS_BIN at it). Missing binaries fail the tests, never skip them:
CI must not pass without having checked the rules and dashboards.
"""

import json
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from shoal.router.dev import wait_until_ready
from tests.monitoring.queries import REPO
from tests.runtime.server_process import free_port

BIN_DIR = Path(os.environ.get("SHOAL_PROMETHEUS_BIN", REPO / ".tools" / "prometheus" / "usr" / "bin"))


def binary(name: str) -> str:
    path = BIN_DIR / name
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"{path} is missing: run `make prometheus` (or set SHOAL_PROMETHEUS_BIN to a directory with "
            "prometheus and promtool)",
            pytrace=False,
        )
    return str(path)


class PrometheusProcess:
    """Scrapes `targets` (job -> host:port list, path /metrics) every second and evaluates `rule_files`."""

    def __init__(self, directory: Path, targets: dict[str, list[str]], rule_files: list[Path]):
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": hosts}]} for job, hosts in targets.items()
            ],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log_path = directory / "prometheus.log"
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [
                    binary("prometheus"),
                    f"--config.file={directory / 'prometheus.yml'}",
                    f"--storage.tsdb.path={directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log_path.read_text()

    def wait_ready(self, timeout_s: float = 30) -> "PrometheusProcess":
        failure = wait_until_ready(f"{self.url}/-/ready", self.process, timeout_s)
        if failure is not None:
            raise RuntimeError(f"prometheus: {failure}:\n{self.logs()}")
        return self

    def api(self, path: str, **params) -> dict:
        """GET /api/v1/<path>; the JSON body, errors included (Prometheus answers them with 4xx)."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            return json.loads(error.read())

    def query(self, expr: str) -> dict:
        return self.api("query", query=expr)

    def value(self, expr: str) -> float | None:
        """The single value of a scalar-like instant query, None while it has no data."""
        result = self.query(expr)["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
