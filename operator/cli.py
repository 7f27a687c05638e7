"""`shoal operator`: reconcile ModelPools in the cluster of the current credentials (in-cluster
service account, else KUBECONFIG) and drive the router's routes through its admin API."""

import argparse
import asyncio
import logging
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    router = parser.add_argument_group("router")
    router.add_argument("--router-admin-url", action="append", default=[], help="a router's admin API, e.g. http://shoal-router-admin:8002 (repeatable)")  # fmt: skip
    router.add_argument("--router-selector", help="find router pods by this label selector (each replica gets every route)")  # fmt: skip
    router.add_argument("--router-namespace", default="shoal-system", help="namespace of the router pods")
    router.add_argument("--router-admin-port", type=int, default=8002)
    router.add_argument("--router-admin-token-file", help="file holding the admin API's bearer token")
    parser.add_argument("--namespace", action="append", default=[], help="watch only this namespace (repeatable; default: all)")  # fmt: skip
    parser.add_argument("--reconcile-interval", type=float, default=5.0, help="seconds between passes over each pool")
    parser.add_argument("--drain", type=float, default=30.0, help="seconds a revision keeps its pods after leaving the route")  # fmt: skip
    parser.add_argument("--metrics-port", type=int, default=8081, help="port of the operator's Prometheus /metrics (0: none)")  # fmt: skip
    parser.add_argument("--metrics-host", default="0.0.0.0", help="address /metrics listens on")
    parser.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="kopf's liveness endpoint ('' for none)")  # fmt: skip
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


def config_of(args: argparse.Namespace):
    from shoal.operator.config import OperatorConfig
    from shoal.operator.router_client import RouterDiscovery

    discovery = RouterDiscovery(args.router_namespace, args.router_selector, args.router_admin_port) if args.router_selector else None  # fmt: skip
    token = Path(args.router_admin_token_file).read_text().strip() if args.router_admin_token_file else None
    return OperatorConfig(
        router_admin_urls=tuple(args.router_admin_url),
        router_discovery=discovery,
        router_admin_token=token,
        reconcile_interval_s=args.reconcile_interval,
        drain_s=args.drain,
        namespaces=tuple(args.namespace),
        metrics_address=(args.metrics_host, args.metrics_port) if args.metrics_port else None,
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level == "INFO":  # kopf says at INFO that every timer tick succeeded: our own log says what changed
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        config = config_of(args)
    except (ValueError, OSError) as error:
        logging.getLogger("shoal.operator").error("%s", error)
        return 2
    from shoal.operator.serve import run_operator

    asyncio.run(run_operator(config, liveness_endpoint=args.liveness or None))
    return 0
