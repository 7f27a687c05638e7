"""The operator's side of the router's admin API (router/admin.py), across every router replica;
what goes over it is shoal/route_contract.py's.

Routes are pushed to each replica (PUT .../route, the same body each time, so a replica that
restarted is whole again on the next pass). Verdicts, canary samples and scrape health are read
from each replica and combined: any replica's verdict aborts, samples add up, the replica that
reads the fewest of a revision's runtimes' /metrics speaks for it, and one unreachable replica
makes the view unreachable, so a rollout never steps forward on partial evidence.

A pool's load, for the autoscaler, is read the same way but combined from whichever replicas
answer (`combined_load`): a load that leaves some out is marked partial, and the autoscaler then
scales up on it but never down. shoal/pool_load.py's PoolLoad is the router's side of the same JSON.
"""

import asyncio
import logging
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp

from shoal.constants import ROUTER_ADMIN_PORT
from shoal.fields import FieldError
from shoal.operator.kube_api import PODS, KubeApi
from shoal.operator.rollout import RouterView
from shoal.pool_load import PoolLoad
from shoal.route_contract import (
    Route,
    ScrapeHealth,
    Verdict,
    measurements_from_json,
    rollback_from_json,
    route_to_json,
)

log = logging.getLogger(__name__)
TIMEOUT = aiohttp.ClientTimeout(total=5.0)


class RouteRejected(RuntimeError):
    """A router answered 4xx to a route: the message is the router's."""


@dataclass(frozen=True)
class RouterLoad:
    """A pool's load as the routers measure it (GET /admin/pools/{pool}/load), every replica that
    answered together (`combined_load`); one replica's answer is shoal/pool_load.py's PoolLoad."""

    ready_replicas: int = 0  # of every revision, as the router's endpoints have them
    replicas: int = 0
    held_requests: int = 0  # held by the router: no ready replica to send them to
    oldest_held_s: float = 0.0
    waiting_requests: int = 0  # the runtimes' own queues, as last scraped
    running_requests: int = 0
    kv_cache_usage: float = 0.0  # fraction in use, 0-1, the runtimes' mean
    ttft_p95_s: float | None = None  # None: no request timed in the window
    requests: int = 0  # finished within the window
    window_s: float = 60.0
    answered: int = 1  # router replicas whose figures these are
    missed: tuple[str, ...] = ()  # the others, and why each is missing

    @property
    def partial(self) -> bool:
        return bool(self.missed)


def combined_load(loads: list[PoolLoad], missed: list[str]) -> RouterLoad:
    """The requests a router replica holds and answers are its own, so they add up. The rest is what
    every replica sees of the same runtimes (their endpoints, and the queues and KV caches scraped
    from their /metrics), so it is the highest any replica reports, not a sum that would count each
    runtime's queue once per router replica."""
    ttfts = [load.ttft_p95_s for load in loads if load.ttft_p95_s is not None]
    return RouterLoad(
        ready_replicas=max((load.ready_replicas for load in loads), default=0),
        replicas=max((load.replicas for load in loads), default=0),
        held_requests=sum(load.held_requests for load in loads),
        oldest_held_s=max((load.oldest_held_s for load in loads), default=0.0),
        waiting_requests=max((load.waiting_requests for load in loads), default=0),
        running_requests=max((load.running_requests for load in loads), default=0),
        kv_cache_usage=max((load.kv_cache_usage for load in loads), default=0.0),
        ttft_p95_s=max(ttfts) if ttfts else None,
        requests=sum(load.requests for load in loads),
        window_s=max((load.window_s for load in loads), default=0.0),
        answered=len(loads),
        missed=tuple(missed),
    )


@dataclass(frozen=True)
class RouterDiscovery:
    """Router replicas found as running pods: namespace, label selector, admin port."""

    namespace: str
    selector: str
    admin_port: int = ROUTER_ADMIN_PORT

    async def urls(self, kube: KubeApi) -> list[str]:
        pods = await kube.list(PODS, self.namespace, self.selector)
        return admin_urls(pods, self.admin_port)


def admin_urls(pods: list[dict], port: int) -> list[str]:
    """The admin API of every router pod whose container runs, Ready or not: a router is not Ready
    while its routes have no ready runtime, and only the operator's next route gives it one (seen
    with the chart on the local node: a route pushed before the runtime was ready left both routers
    unready, and the operator, waiting for ready ones, never pushed again). Terminating pods are
    left out; one not answering yet makes the view unreachable for a pass, as any replica would."""
    return sorted(
        f"http://{pod['status']['podIP']}:{port}"
        for pod in pods
        if not pod["metadata"].get("deletionTimestamp") and pod.get("status", {}).get("podIP") and _running(pod)
    )


def _running(pod: dict) -> bool:
    statuses = pod["status"].get("containerStatuses") or ()
    return bool(statuses) and all("running" in (status.get("state") or {}) for status in statuses)


class RouterClient:
    def __init__(
        self, static_urls: tuple[str, ...], discovery: RouterDiscovery | None, kube: KubeApi | None, token: str | None
    ):
        self.static_urls = tuple(u.rstrip("/") for u in static_urls)
        self.discovery, self.kube = discovery, kube
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session = aiohttp.ClientSession(headers=headers, timeout=TIMEOUT)

    async def close(self) -> None:
        await self._session.close()

    async def urls(self) -> list[str]:
        found = list(self.static_urls)
        if self.discovery is not None and self.kube is not None:
            found += await self.discovery.urls(self.kube)
        return sorted(set(found))

    async def put_route(self, pool: str, route: Route) -> None:
        """Raises RouteRejected (4xx) or aiohttp.ClientError; every replica is tried either way."""
        body = route_to_json(route)
        results = await asyncio.gather(
            *(self._put(url, pool, body) for url in await self.urls()), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def delete_route(self, pool: str) -> None:
        for url in await self.urls():
            async with self._session.delete(f"{url}/admin/pools/{quote(pool)}/route") as response:
                if response.status not in (200, 404):
                    raise RouteRejected(
                        f"{url}: DELETE route of {pool}: HTTP {response.status}: {await response.text()}"
                    )

    async def reset_verdict(self, pool: str, revision: str) -> None:
        for url in await self.urls():
            async with self._session.post(
                f"{url}/admin/pools/{quote(pool)}/revisions/{quote(revision)}/reset"
            ) as response:
                await response.read()  # 404: that replica had no verdict on it

    async def view(self, pool: str, canary: str | None, window_s: float | None) -> RouterView:
        try:
            urls = await self.urls()
            if not urls:
                return RouterView(reachable=False, error="no router replicas found")
            replies = await asyncio.gather(*(self._view_one(url, pool, canary, window_s) for url in urls))
        # FieldError: a reply not in the contract's shape (a router of another version) pauses the
        # rollout as an unreachable router does, rather than being acted on.
        except (TimeoutError, aiohttp.ClientError, OSError, FieldError) as error:
            return RouterView(reachable=False, error=f"{type(error).__name__}: {error}")
        verdicts: dict[str, Verdict] = {}
        unscraped: dict[str, ScrapeHealth] = {}
        for reply in replies:
            verdicts.update(reply.verdicts)
            for revision, health in reply.unscraped.items():  # each replica scrapes for itself: the worst counts
                if health.failing > unscraped.get(revision, ScrapeHealth()).failing:
                    unscraped[revision] = health
        return RouterView(
            reachable=True,
            verdicts=verdicts,
            canary_requests=sum(r.canary_requests for r in replies),
            unscraped=unscraped,
        )

    async def load(self, pool: str, window_s: float) -> RouterLoad:
        """The pool's load from every router replica that answers; `answered` 0 when none does."""
        try:
            urls = await self.urls()
        except (TimeoutError, aiohttp.ClientError, OSError) as error:  # router discovery lists pods
            return combined_load([], [f"finding the routers: {type(error).__name__}: {error}"])
        if not urls:
            return combined_load([], ["no router replicas found"])
        replies = await asyncio.gather(*(self._load_one(url, pool, window_s) for url in urls))
        return combined_load(
            [reply for reply in replies if isinstance(reply, PoolLoad)],
            [reply for reply in replies if isinstance(reply, str)],
        )

    async def _load_one(self, url: str, pool: str, window_s: float) -> PoolLoad | str:
        """One replica's figures, or why there are none."""
        try:
            params = {"window_s": f"{window_s:g}"}
            async with self._session.get(f"{url}/admin/pools/{quote(pool)}/load", params=params) as response:
                if response.status == 404:  # no route for the pool there (yet), or a router without /load
                    return f"{url}: no load figures for {pool} (HTTP 404)"
                response.raise_for_status()
                return PoolLoad.from_json(await response.json())
        # ValueError: not JSON, or not the load's shape (FieldError): a router of another version.
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as error:
            return f"{url}: {type(error).__name__}: {error}"

    async def _put(self, url: str, pool: str, body: dict) -> None:
        async with self._session.put(f"{url}/admin/pools/{quote(pool)}/route", json=body) as response:
            if response.status >= 400:
                raise RouteRejected(f"{url}: HTTP {response.status}: {await response.text()}")

    async def _view_one(self, url: str, pool: str, canary: str | None, window_s: float | None) -> RouterView:
        async with self._session.get(f"{url}/admin/pools/{quote(pool)}/rollback") as response:
            verdicts = {}
            if response.status == 200:  # 404: the replica has no route for the pool yet
                verdicts = rollback_from_json(await response.json())
            elif response.status != 404:
                raise aiohttp.ClientResponseError(
                    response.request_info, (), status=response.status, message=await response.text()
                )
        # Without a canary step under way the window only bounds what the router sums; the scrape
        # health it reports is of now either way.
        params = {"window_s": f"{window_s:.3f}"} if canary is not None and window_s else {}
        async with self._session.get(f"{url}/admin/measurements", params=params) as response:
            response.raise_for_status()
            measured = [m for m in measurements_from_json(await response.json()) if m.pool == pool]
        return RouterView(
            reachable=True,
            verdicts=verdicts,
            canary_requests=sum(m.requests for m in measured if m.revision == canary) if params else 0,
            unscraped={m.revision: m.scrapes for m in measured if m.scrapes.failing},
        )
