"""The operator's side of the router's admin API (router/admin.py), across every router replica.

Routes are pushed to each replica (PUT .../route, the same body each time, so a replica that
restarted is whole again on the next pass). Verdicts and canary samples are read from each
replica and combined: any replica's verdict aborts, samples add up, and one unreachable replica
makes the view unreachable, so a rollout never steps forward on partial evidence.
"""

import asyncio
import logging
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp

from shoal.operator.kube_api import PODS, KubeApi
from shoal.operator.rollout import RouterView
from shoal.operator.route import is_ready

log = logging.getLogger(__name__)
TIMEOUT = aiohttp.ClientTimeout(total=5.0)


class RouteRejected(RuntimeError):
    """A router answered 4xx to a route: the message is the router's."""


@dataclass(frozen=True)
class RouterDiscovery:
    """Router replicas found as ready pods: namespace, label selector, admin port."""

    namespace: str
    selector: str
    admin_port: int = 8002

    async def urls(self, kube: KubeApi) -> list[str]:
        pods = await kube.list(PODS, self.namespace, self.selector)
        return sorted(f"http://{p['status']['podIP']}:{self.admin_port}" for p in pods if is_ready(p) and (p.get("status") or {}).get("podIP"))  # fmt: skip


class RouterClient:
    def __init__(self, static_urls: tuple[str, ...], discovery: RouterDiscovery | None, kube: KubeApi | None, token: str | None):  # fmt: skip
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

    async def put_route(self, pool: str, route: dict) -> None:
        """Raises RouteRejected (4xx) or aiohttp.ClientError; every replica is tried either way."""
        results = await asyncio.gather(*(self._put(url, pool, route) for url in await self.urls()), return_exceptions=True)  # fmt: skip
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def delete_route(self, pool: str) -> None:
        for url in await self.urls():
            async with self._session.delete(f"{url}/admin/pools/{quote(pool)}/route") as response:
                if response.status not in (200, 404):
                    raise RouteRejected(f"{url}: DELETE route of {pool}: HTTP {response.status}: {await response.text()}")

    async def reset_verdict(self, pool: str, revision: str) -> None:
        for url in await self.urls():
            async with self._session.post(f"{url}/admin/pools/{quote(pool)}/revisions/{quote(revision)}/reset") as response:
                await response.read()  # 404: that replica had no verdict on it

    async def view(self, pool: str, canary: str | None, window_s: float | None) -> RouterView:
        try:
            urls = await self.urls()
            if not urls:
                return RouterView(reachable=False, error="no router replicas found")
            replies = await asyncio.gather(*(self._view_one(url, pool, canary, window_s) for url in urls))
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
            return RouterView(reachable=False, error=f"{type(error).__name__}: {error}")
        verdicts: dict = {}
        for replica_verdicts, _ in replies:
            verdicts.update(replica_verdicts)
        return RouterView(reachable=True, verdicts=verdicts, canary_requests=sum(n for _, n in replies))

    async def _put(self, url: str, pool: str, route: dict) -> None:
        async with self._session.put(f"{url}/admin/pools/{quote(pool)}/route", json=route) as response:
            if response.status >= 400:
                raise RouteRejected(f"{url}: HTTP {response.status}: {await response.text()}")

    async def _view_one(self, url: str, pool: str, canary: str | None, window_s: float | None) -> tuple[dict, int]:
        async with self._session.get(f"{url}/admin/pools/{quote(pool)}/rollback") as response:
            verdicts = {}
            if response.status == 200:  # 404: the replica has no route for the pool yet
                verdicts = {v["revision"]: v for v in (await response.json())["rolled_back"]}
            elif response.status != 404:
                raise aiohttp.ClientResponseError(response.request_info, (), status=response.status, message=await response.text())  # fmt: skip
        if canary is None or not window_s:
            return verdicts, 0
        async with self._session.get(f"{url}/admin/measurements", params={"window_s": f"{window_s:.3f}"}) as response:
            response.raise_for_status()
            measured = (await response.json())["measurements"]
        requests = sum(m["all"]["requests"] for m in measured if m["pool"] == pool and m["revision"] == canary)
        return verdicts, requests
