"""`shoal dev` with a runtime that dies: the router stops and the command exits 1, saying why, rather
than serving 503s in front of nothing. The runtime is the fake one, in a process of its own. While
it serves, its admin API needs the token `shoal dev` wrote to a file only this user may read."""

import logging
import signal
import stat
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from shoal.router.dev import serve_with_runtime, with_admin_token, with_local_runtime
from tests.router.harness import make_config, pool
from tests.router.test_readiness_and_recovery import wait_for
from tests.router.test_routes import text
from tests.runtime.server_process import free_port

pytestmark = pytest.mark.integration


def test_the_router_stops_and_dev_exits_1_when_its_runtime_dies(caplog, tmp_path):
    port, metrics_port, router_port, admin_port = free_port(), free_port(), free_port(), free_port()
    runtime = subprocess.Popen(
        [sys.executable, "-m", "tests.router.fake_runtime", "--port", str(port), "--metrics-port", str(metrics_port)]
    )
    placeholder = SimpleNamespace(target="unused:1", metrics_url=None)
    config = make_config(
        [pool("fake", {"v1": [placeholder]}, model="fake-model")],
        listen={"host": "127.0.0.1", "port": router_port},
        admin={"host": "127.0.0.1", "port": admin_port},
    )
    token_file = tmp_path / "admin-token"
    config = with_admin_token(with_local_runtime(config, port, metrics_port), token_file)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    admin = f"http://127.0.0.1:{admin_port}/admin/pools"
    killed_at, served, admin_answers = [], [], []

    def router_ready() -> bool:
        try:
            return text(f"http://127.0.0.1:{router_port}/ready")[0] == 200
        except OSError:  # not listening yet
            return False

    def kill_once_serving() -> None:
        try:
            wait_for(router_ready, timeout_s=30, poll_s=0.1)
            served.append(True)
            token = token_file.read_text().strip()
            admin_answers.extend([text(admin)[0], text(admin, Authorization=f"Bearer {token}")[0]])
        finally:  # killed either way, so the router below never serves on forever
            runtime.send_signal(signal.SIGKILL)
            killed_at.append(time.monotonic())

    killer = threading.Thread(target=kill_once_serving, daemon=True)
    killer.start()
    try:
        with caplog.at_level(logging.ERROR, logger="shoal.router.dev"):
            status = serve_with_runtime(config, runtime, f"http://127.0.0.1:{metrics_port}/metrics", poll_s=0.1)
        stopped_at = time.monotonic()
    finally:
        runtime.kill()
        runtime.wait()
    killer.join(5)
    assert served and status == 1 and stopped_at - killed_at[0] < 5
    assert admin_answers == [401, 200]
    assert f"the runtime exited with status {-signal.SIGKILL}" in caplog.text
    with pytest.raises(OSError):  # the router is gone too
        text(f"http://127.0.0.1:{router_port}/health")
