"""Where runtime endpoints come from. A source publishes the whole set of endpoints each time it
changes; the route table (route_table.py) adds the endpoints of routes pushed over the admin API,
and the registry turns the difference into channels. The static source reads the config file
(local use); the Kubernetes source (kubernetes.py) follows EndpointSlices."""

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from shoal.route_contract import Route


@dataclass(frozen=True)
class Endpoint:
    pool: str
    revision: str
    target: str  # host:port of the runtime's gRPC server
    metrics_url: str | None = None


Publish = Callable[[frozenset[Endpoint]], None]


class EndpointSource(Protocol):
    async def run(self, publish: Publish) -> None:
        """Publishes the full endpoint set now and on every change, until cancelled."""


def listed_endpoints(pools: Iterable[Route]) -> frozenset[Endpoint]:
    """The endpoints listed under the pools' revisions (in the config file, or in a pushed route)."""
    return frozenset(
        Endpoint(pool.name, revision, e.target, e.metrics_url)
        for pool in pools
        for revision, endpoints in pool.revisions.items()
        for e in endpoints
    )


class StaticEndpointSource:
    """The endpoints listed under each pool's revisions in the config file; they never change."""

    def __init__(self, pools: tuple[Route, ...]):
        self.endpoints = listed_endpoints(pools)

    async def run(self, publish: Publish) -> None:
        publish(self.endpoints)
        await asyncio.Event().wait()
