"""`shoal operator`: reconcile ModelPools in the cluster of the current credentials (in-cluster
service account, else KUBECONFIG) and drive the router's routes through its admin API."""

import argparse
import asyncio
import logging
from pathlib import Path

from shoal.constants import OPERATOR_HEALTH_PORT, OPERATOR_METRICS_PORT, ROUTER_ADMIN_PORT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    router = parser.add_argument_group("router")
    router.add_argument(
        "--router-admin-url",
        action="append",
        default=[],
        help=f"a router's admin API, e.g. http://shoal-router-admin:{ROUTER_ADMIN_PORT} (repeatable)",
    )
    router.add_argument(
        "--router-selector", help="find router pods by this label selector (each replica gets every route)"
    )
    router.add_argument("--router-namespace", default="shoal-system", help="namespace of the router pods")
    router.add_argument("--router-admin-port", type=int, default=ROUTER_ADMIN_PORT)
    router.add_argument("--router-admin-token-file", help="file holding the admin API's bearer token")
    parser.add_argument(
        "--namespace", action="append", default=[], help="watch only this namespace (repeatable; default: all)"
    )
    parser.add_argument("--reconcile-interval", type=float, default=5.0, help="seconds between passes over each pool")
    parser.add_argument(
        "--drain", type=float, default=30.0, help="seconds a revision keeps its pods after leaving the route"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=OPERATOR_METRICS_PORT,
        help="port of the operator's Prometheus /metrics (0: none)",
    )
    parser.add_argument("--metrics-host", default="0.0.0.0", help="address /metrics listens on")
    parser.add_argument(
        "--liveness",
        default=f"http://0.0.0.0:{OPERATOR_HEALTH_PORT}/healthz",
        help="kopf's liveness endpoint ('' for none)",
    )
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    election = parser.add_argument_group("leader election (several replicas, one acting)")
    election.add_argument(
        "--leader-elect", action="store_true", help="act only while holding a coordination.k8s.io Lease"
    )
    election.add_argument(
        "--leader-election-namespace",
        help="the Lease's namespace (default: the pod's, from POD_NAMESPACE or the service account, else shoal-system)",
    )
    election.add_argument(
        "--leader-election-id", default="shoal-operator", help="the Lease's name, shared by the replicas"
    )
    election.add_argument(
        "--leader-election-lease-duration", type=float, default=15.0, help="seconds a silent leader keeps the lease"
    )
    election.add_argument(
        "--leader-election-renew-deadline",
        type=float,
        default=10.0,
        help="seconds the leader keeps acting without a renewal",
    )
    election.add_argument(
        "--leader-election-retry-period", type=float, default=2.0, help="seconds between attempts to acquire or renew"
    )


def config_of(args: argparse.Namespace):
    from shoal.operator.config import OperatorConfig
    from shoal.operator.leader_election import LeaderElectionSettings, Timing
    from shoal.operator.leader_lease import default_identity, default_namespace
    from shoal.operator.router_client import RouterDiscovery

    discovery = (
        RouterDiscovery(args.router_namespace, args.router_selector, args.router_admin_port)
        if args.router_selector
        else None
    )
    token = Path(args.router_admin_token_file).read_text().strip() if args.router_admin_token_file else None
    election = None
    if args.leader_elect:
        timing = Timing(
            args.leader_election_lease_duration, args.leader_election_renew_deadline, args.leader_election_retry_period
        )
        election = LeaderElectionSettings(
            args.leader_election_namespace or default_namespace(), args.leader_election_id, default_identity(), timing
        )
    return OperatorConfig(
        router_admin_urls=tuple(args.router_admin_url),
        router_discovery=discovery,
        router_admin_token=token,
        reconcile_interval_s=args.reconcile_interval,
        drain_s=args.drain,
        namespaces=tuple(args.namespace),
        metrics_address=(args.metrics_host, args.metrics_port) if args.metrics_port else None,
        leader_election=election,
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
    from shoal.operator.leader_lease import LeadershipLost
    from shoal.operator.serve import run_operator

    try:
        asyncio.run(run_operator(config, liveness_endpoint=args.liveness or None))
    except LeadershipLost as error:
        # As controller-runtime does: exit, and come back (the Deployment restarts the container)
        # as a candidate with a clean slate, rather than risk acting beside the new leader.
        logging.getLogger("shoal.operator").error("leader election lost: %s", error)
        return 1
    return 0
