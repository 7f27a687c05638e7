"""The few Kubernetes API calls the stand-in controllers make, over HTTP with JSON bodies."""

from collections.abc import Mapping
from typing import Any

import aiohttp

from tests.support.patches import JSON_PATCH, MERGE_PATCH


class ApiError(Exception):
    def __init__(self, status: int, body: Any):
        super().__init__(f"{status}: {body.get('message') if isinstance(body, Mapping) else body}")
        self.status = status
        self.body = body


class ApiClient:
    """Paths come from api_paths.object_path; the session is the caller's."""

    def __init__(self, session: aiohttp.ClientSession, server: str):
        self._session = session
        self._server = server.rstrip("/")

    async def list(self, path: str, *, label_selector: str = "") -> list[dict[str, Any]]:
        params = {"labelSelector": label_selector} if label_selector else {}
        return (await self._call("GET", path, params=params))["items"]

    async def get(self, path: str) -> dict[str, Any]:
        return await self._call("GET", path)

    async def create(self, path: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call("POST", path, json=obj)

    async def merge_patch(self, path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call("PATCH", path, json=patch, content_type=MERGE_PATCH)

    async def replace_status(self, path: str, status: Mapping[str, Any]) -> dict[str, Any]:
        """Write the whole status (a merge patch would keep keys that the new status lacks)."""
        operations = [{"op": "add", "path": "/status", "value": status}]
        return await self._call("PATCH", f"{path}/status", json=operations, content_type=JSON_PATCH)

    async def delete(self, path: str, *, grace_seconds: int | None = None) -> None:
        """Delete; an object already gone counts as deleted."""
        options = {} if grace_seconds is None else {"gracePeriodSeconds": grace_seconds}
        try:
            await self._call("DELETE", path, json=options)
        except ApiError as error:
            if error.status != 404:
                raise

    async def _call(self, method: str, path: str, *, content_type: str = "application/json", **kwargs: Any) -> Any:
        headers = {"Content-Type": content_type} if "json" in kwargs else {}
        async with self._session.request(method, self._server + path, headers=headers, **kwargs) as response:
            body = await response.json(content_type=None)
            if response.status >= 400:
                raise ApiError(response.status, body)
            return body
