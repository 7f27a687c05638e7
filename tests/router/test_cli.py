"""`shoal router` and `shoal dev`: flags over the config file, and clear errors instead of tracebacks."""

import argparse
import subprocess
import sys

import pytest

from shoal.router.cli import add_arguments, load
from shoal.router.dev import LOCAL_CONFIG, with_local_runtime


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_flags_override_where_the_config_listens():
    config = load(parse("--config", str(LOCAL_CONFIG), "--port", "9000", "--admin-port", "9002", "--grpc-port", "0"))
    assert (config.listen.host, config.listen.port, config.admin.port, config.grpc.port) == ("127.0.0.1", 9000, 9002, 0)
    assert load(parse("--config", str(LOCAL_CONFIG))).listen.port == 8000


def test_dev_points_the_pool_at_its_own_runtime():
    config = with_local_runtime(load(parse("--config", str(LOCAL_CONFIG))), 6000, 6001)
    (pool,) = config.pools
    assert pool.revisions == {"stable": pool.revisions["stable"]} and pool.canary is None
    (endpoint,) = pool.revisions["stable"]
    assert (endpoint.target, endpoint.metrics_url) == ("127.0.0.1:6000", "http://127.0.0.1:6001/metrics")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("pools:\n  - name: chat\n    stable: v1\n    canary_weight: lots\n", "pools[0].canary_weight: must be float"),
        # Without a token, anyone who reaches the admin port could change routes: it does not start.
        ("admin: {host: 0.0.0.0}\npools: []\n", "admin.token_file: required when admin.host is '0.0.0.0'"),
    ],
)
def test_a_bad_config_exits_with_a_message(tmp_path, config, message):
    (tmp_path / "router.yaml").write_text(config)
    result = subprocess.run(
        [sys.executable, "-m", "shoal", "router", "--config", str(tmp_path / "router.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_the_shoal_command_lists_router_and_dev():
    result = subprocess.run([sys.executable, "-m", "shoal", "--help"], capture_output=True, text=True, timeout=60)
    assert "router" in result.stdout and "dev" in result.stdout
