"""The endpoint set the registry serves: the endpoint source's (config file or Kubernetes) and the
endpoints of the routes pushed over the admin API, for the pools the router has.

Each pushed route replaces its pool's previous pushed endpoints. A pool that goes loses all its
endpoints, the source's too (they come back with the pool), so its channels are retired. The union
is published only when it changed: an identical push opens and closes nothing.
"""

from collections.abc import Iterable

from shoal.router.backends.endpoints import Endpoint, Publish


class RouteTable:
    def __init__(self, publish: Publish, pools: Iterable[str]):
        self._publish = publish
        self._pools = set(pools)  # the config file's at first
        self._from_source: frozenset[Endpoint] = frozenset()
        self._pushed: dict[str, frozenset[Endpoint]] = {}
        self._published: frozenset[Endpoint] | None = None

    def from_source(self, endpoints: frozenset[Endpoint]) -> None:
        """The endpoint source's whole set (its Publish callback)."""
        self._from_source = endpoints
        self._refresh()

    def push(self, pool: str, endpoints: frozenset[Endpoint]) -> None:
        """The pool is served, with these endpoints besides the source's."""
        self._pools.add(pool)
        self._pushed[pool] = endpoints
        self._refresh()

    def drop(self, pool: str) -> None:
        self._pools.discard(pool)
        self._pushed.pop(pool, None)
        self._refresh()

    def endpoints(self) -> frozenset[Endpoint]:
        everything = self._from_source.union(*self._pushed.values())
        return frozenset(e for e in everything if e.pool in self._pools)

    def _refresh(self) -> None:
        endpoints = self.endpoints()
        if endpoints != self._published:
            self._published = endpoints
            self._publish(endpoints)
