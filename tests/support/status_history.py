"""Every status a custom resource was stored with, as a watch sees them: the path a rollout took,
which a single read at the end cannot show."""

import asyncio
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.support.api_client import ApiClient, ApiError


@dataclass
class StatusHistory:
    """Every status each object of a collection was stored with, by name, oldest first."""

    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    async def follow(self, client: ApiClient, path: str) -> None:
        """Watch the collection at `path` (e.g. a namespace's ModelPools) until cancelled,
        resuming where each watch ended."""
        while True:  # each watch ends (its timeout, an API server restart): list, then watch again
            try:
                objects, version = await client.list_with_version(path)
                for obj in objects:
                    self._record(obj)
                async for event in client.watch(path, resource_version=version):
                    if event["type"] == "ERROR":  # e.g. 410 Gone: our version was compacted
                        break
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._record(event["object"])
            except (ApiError, aiohttp.ClientError):
                await asyncio.sleep(0.5)

    def _record(self, obj: dict[str, Any]) -> None:
        history = self.statuses.setdefault(obj["metadata"]["name"], [])
        status = obj.get("status") or {}
        if not history or history[-1] != status:
            history.append(status)
