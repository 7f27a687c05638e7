"""`shoal dev` (what `make run` starts): a runtime on the embedded model and the router in front of it.

The runtime runs as a child process (`shoal runtime`); once it is ready the router serves the
OpenAI API with the given config (by default router/examples/local.yaml), whose one pool's stable
revision is pointed at that runtime. Ctrl-C (or SIGTERM) stops both: the router drains, then the
runtime does.

The admin API always needs a token, even on 127.0.0.1: any process on this machine could change
routes otherwise. Unless the config names its own `admin.token_file`, a random one is made for each
run, in a file only this user can read that is deleted on exit; the log says how to use it.

If the runtime dies, `shoal dev` stops the router and exits 1, naming the runtime's exit status, as
`vllm serve` exits when its engine dies: in development a crash is a bug to see (its traceback is
just above in the same terminal), not something to paper over with restarts that reload the model
and fail the same way, and a router left up without its runtime would only answer 503s.
"""

import argparse
import asyncio
import dataclasses
import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from shoal.constants import ROUTER_HTTP_PORT, RUNTIME_GRPC_PORT, RUNTIME_METRICS_PORT

LOCAL_CONFIG = Path(__file__).resolve().parent / "examples" / "local.yaml"
log = logging.getLogger("shoal.router.dev")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default=str(LOCAL_CONFIG), help="router config with one pool (default: router/examples/local.yaml)"
    )
    parser.add_argument(
        "--model", default="default", help="the runtime's --model (default: the embedded SmolLM2-135M-Instruct)"
    )
    parser.add_argument("--runtime-port", type=int, default=RUNTIME_GRPC_PORT, help="the runtime's gRPC port")
    parser.add_argument("--runtime-metrics-port", type=int, default=RUNTIME_METRICS_PORT)
    parser.add_argument(
        "--port", type=int, default=None, help=f"override the router's listen.port (default {ROUTER_HTTP_PORT})"
    )
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from shoal.router.cli import load
    from shoal.router.config import ConfigError

    try:
        config = load(
            argparse.Namespace(config=args.config, host=None, port=args.port, admin_port=None, grpc_port=None)
        )
    except ConfigError as error:
        raise SystemExit(f"shoal dev: {args.config}: {error}") from None
    if len(config.pools) != 1:
        raise SystemExit(f"shoal dev: {args.config}: needs exactly one pool, has {len(config.pools)}")
    config = with_local_runtime(config, args.runtime_port, args.runtime_metrics_port)
    with tempfile.TemporaryDirectory(prefix="shoal-dev-") as directory:
        if config.admin_token is None:
            token_file = Path(directory) / "admin-token"
            config = with_admin_token(config, token_file)
            log.info(
                'the admin API needs a token: curl -H "Authorization: Bearer $(cat %s)" http://%s:%d/admin/pools',
                token_file,
                config.admin.host,
                config.admin.port,
            )
        runtime = _start_runtime(args, config.pools[0])
        try:
            log.info("waiting for the runtime to load the model (the first start converts it, about 25 s)")
            return serve_with_runtime(config, runtime, f"http://127.0.0.1:{args.runtime_metrics_port}/ready")
        except KeyboardInterrupt:
            return 0
        finally:
            _stop(runtime)


def serve_with_runtime(config, runtime: subprocess.Popen, ready_url: str, poll_s: float = 0.2) -> int:
    """Waits for the runtime at `ready_url`, then serves the router until SIGINT or SIGTERM (0) or
    until the runtime exits (1, after the router has stopped)."""
    failure = wait_until_ready(ready_url, runtime, timeout_s=600)
    if failure is not None:
        log.error("the runtime did not come up: %s", failure)
        return 1
    asyncio.run(_serve_while_running(config, runtime, poll_s))
    if runtime.poll() is not None:
        log.error("the runtime exited with status %s; the router stopped with it", runtime.returncode)
        return 1
    return 0


async def _serve_while_running(config, runtime: subprocess.Popen, poll_s: float) -> None:
    from shoal.router.serve import serve

    stop = asyncio.Event()

    async def watch() -> None:
        while runtime.poll() is None:
            await asyncio.sleep(poll_s)
        stop.set()

    watcher = asyncio.create_task(watch())
    try:
        await serve(config, stop=stop)
    finally:
        watcher.cancel()


def with_local_runtime(config, port: int, metrics_port: int):
    """The config with its one pool served by the local runtime alone (as the stable revision)."""
    from shoal.route_contract import RuntimeEndpoint

    pool = config.pools[0]
    endpoint = RuntimeEndpoint(f"127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics")
    pool = dataclasses.replace(pool, canary=None, canary_weight=0.0, revisions={pool.stable: (endpoint,)})
    return dataclasses.replace(config, pools=(pool,))


def with_admin_token(config, token_file: Path):
    """The config with a new random admin token, written to `token_file` (readable by this user
    only) for whoever calls the admin API."""
    token = secrets.token_urlsafe(32)
    with os.fdopen(os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(token + "\n")
    return dataclasses.replace(config, admin_token=token)


def _start_runtime(args: argparse.Namespace, pool) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "shoal",
        "runtime",
        "--model",
        args.model,
        "--host",
        "127.0.0.1",
        "--port",
        str(args.runtime_port),
        "--metrics-port",
        str(args.runtime_metrics_port),
        "--pool",
        pool.name,
        "--revision",
        pool.stable,
        "--log-level",
        args.log_level,
    ]
    log.info("starting the runtime: %s", " ".join(command[1:]))
    # Its own process group: Ctrl-C reaches the router only, which then stops the runtime in order.
    return subprocess.Popen(command, start_new_session=True)


def wait_until_ready(url: str, process: subprocess.Popen, timeout_s: float, poll_s: float = 0.2) -> str | None:
    """Polls `url` until it answers 200. None once it does; otherwise why not (the process exited or time ran out)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"the process exited with {process.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return None
        except OSError:
            pass
        time.sleep(poll_s)
    return f"{url} did not answer 200 within {timeout_s:.0f}s"


def _stop(runtime: subprocess.Popen) -> None:
    if runtime.poll() is None:
        runtime.send_signal(signal.SIGTERM)
        try:
            runtime.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(runtime.pid, signal.SIGKILL)
            runtime.wait()
