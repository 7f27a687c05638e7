"""Pools added, changed and removed while the router runs: the routes the operator pushes through
the admin API (`PUT` and `DELETE /admin/pools/{pool}/route`), each applied all or nothing.

A changed route keeps the pool's state: rollout verdicts, measurements, queues, requests in flight,
token buckets. Its split goes through PoolRollout.set_weights, so a route that would send traffic
to a rolled-back revision is refused (RolloutConflict) before anything changes, as is one that takes
a QoS class of its model that another pool takes (RouteConflict; traffic/model_pools.py). Requests in
flight finish where they are: the registry retires removed endpoints once their requests end, and a
removed pool's requests hold on to its state.
"""

import logging
from collections.abc import Collection

from shoal.route_contract import Route
from shoal.router.backends.endpoints import listed_endpoints
from shoal.router.backends.registry import BackendRegistry
from shoal.router.backends.route_table import RouteTable
from shoal.router.pools import PoolState
from shoal.router.traffic.measurements import Measurements
from shoal.router.traffic.model_pools import clash

log = logging.getLogger(__name__)


class RouteConflict(ValueError):
    """The route clashes with another pool."""


class Routes:
    def __init__(
        self,
        pools: dict[str, PoolState],
        table: RouteTable,
        backends: BackendRegistry,
        measurements: Measurements,
        tenants: Collection[str],
    ):
        self.pools = pools  # the router's live map, shared with the dispatcher, admin API and metrics
        self.table = table
        self.backends = backends
        self.measurements = measurements
        self.tenants = tenants  # the router's own: a route's limit on another name is logged, not refused

    def put(self, config: Route) -> PoolState:
        """Creates the pool or changes it in place. Raises RouteConflict or RolloutConflict, and then
        nothing has changed."""
        reason = clash(config, (other.config for other in self.pools.values()))
        if reason is not None:
            raise RouteConflict(reason)
        pool = self.pools.get(config.name)
        changed = pool is None or config != pool.config
        if pool is None:
            pool = self.pools[config.name] = PoolState(config)
        else:
            pool.reconfigure(config)  # the same route too: PUT .../weights may have moved the split since
        if changed:
            self._log_change(config)
        self.measurements.retain(config.longest_window_s)
        self.table.push(config.name, listed_endpoints([config]))
        pool.refresh(self.backends)
        return pool

    def _log_change(self, config: Route) -> None:
        log.info("route of pool %s set: model %s, revisions %s", config.name, config.model, sorted(config.revisions))
        # The ModelPool and the router's config have different owners: a limit on a tenant the router
        # does not have is harmless (it has no keys, so no requests) and must not keep the pool unserved.
        unknown = sorted(t.name for t in config.tenants if t.name not in self.tenants)
        if unknown:
            log.warning(
                "pool %s limits tenants the router does not have: %s (have %s)",
                config.name,
                unknown,
                sorted(self.tenants),
            )

    def delete(self, name: str) -> bool:
        """Removes the pool and its endpoints; False if there is none."""
        if self.pools.pop(name, None) is None:
            return False
        self.table.drop(name)
        log.info("pool %s removed", name)
        return True
