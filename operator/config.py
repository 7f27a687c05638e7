"""The operator's settings, typed; `shoal operator` fills them from flags."""

from dataclasses import dataclass

from shoal.operator.leader_election import LeaderElectionSettings
from shoal.operator.router_client import RouterDiscovery


@dataclass(frozen=True)
class OperatorConfig:
    router_admin_urls: tuple[str, ...] = ()  # fixed router admin endpoints
    router_discovery: RouterDiscovery | None = None  # or router pods found by label
    router_admin_token: str | None = None
    reconcile_interval_s: float = 5.0  # every pool is reconciled at least this often
    drain_s: float = 30.0  # a revision taken out of the route keeps its pods this long
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    metrics_address: tuple[str, int] | None = None  # (host, port) of /metrics; None: not served
    leader_election: LeaderElectionSettings | None = None  # None: act at once, alone

    def __post_init__(self):
        if not self.router_admin_urls and self.router_discovery is None:
            raise ValueError("the operator needs the router: give --router-admin-url or --router-selector")
        if self.reconcile_interval_s <= 0 or self.drain_s < 0:
            raise ValueError("reconcile interval must be > 0 and drain >= 0 seconds")
