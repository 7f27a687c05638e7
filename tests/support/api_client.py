"""The few Kubernetes API calls the tests and the local node make, over HTTP with JSON bodies,
authenticated as the ClusterAccess given (a client certificate or a token)."""

# Annotations stay strings: in ApiClient's body `list` is the method, not the builtin.
from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from tests.support.kubeconfig import ClusterAccess

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class ApiError(Exception):
    def __init__(self, status: int, body: Any):
        super().__init__(f"{status}: {body.get('message') if isinstance(body, Mapping) else body}")
        self.status = status
        self.body = body


class ApiClient:
    """Paths come from api_paths.object_path; the session is the caller's."""

    def __init__(self, session: aiohttp.ClientSession, access: ClusterAccess):
        self._session = session
        self._server = access.server.rstrip("/")
        self._ssl = access.ssl_context()
        self._headers = access.headers()

    async def list(self, path: str, *, label_selector: str = "", field_selector: str = "") -> list[dict[str, Any]]:
        return (await self.list_with_version(path, label_selector=label_selector, field_selector=field_selector))[0]

    async def list_with_version(
        self, path: str, *, label_selector: str = "", field_selector: str = ""
    ) -> tuple[list[dict[str, Any]], str]:
        """The items, and the list's resourceVersion (to watch from)."""
        params = {
            key: value for key, value in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if value
        }
        body = await self._call("GET", path, params=params)
        return body["items"], body["metadata"]["resourceVersion"]

    async def watch(
        self, path: str, *, resource_version: str, field_selector: str = "", timeout_s: int = 60
    ) -> AsyncIterator[dict[str, Any]]:
        """The watch events (type, object) after resource_version, until the server ends the watch."""
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(timeout_s),
            "allowWatchBookmarks": "true",
        }
        if field_selector:
            params["fieldSelector"] = field_selector
        timeout = aiohttp.ClientTimeout(total=None, sock_read=timeout_s + 30)
        async with self._session.get(
            self._server + path, params=params, ssl=self._ssl, headers=self._headers, timeout=timeout
        ) as response:
            if response.status >= 400:
                raise ApiError(response.status, await response.json(content_type=None))
            async for line in response.content:
                if line.strip():
                    yield json.loads(line)

    async def get(self, path: str) -> dict[str, Any]:
        return await self._call("GET", path)

    async def create(self, path: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call("POST", path, json=obj)

    async def replace(self, path: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call("PUT", path, json=obj)

    async def merge_patch(self, path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call("PATCH", path, json=patch, content_type=MERGE_PATCH)

    async def replace_status(self, path: str, status: Mapping[str, Any]) -> dict[str, Any]:
        """Write the whole status (a merge patch would keep keys that the new status lacks)."""
        operations = [{"op": "add", "path": "/status", "value": status}]
        return await self._call("PATCH", f"{path}/status", json=operations, content_type=JSON_PATCH)

    async def delete(self, path: str, *, grace_seconds: int | None = None, uid: str | None = None) -> None:
        """Delete (only the object with this uid, if given); an object already gone counts as deleted."""
        options: dict[str, Any] = {} if grace_seconds is None else {"gracePeriodSeconds": grace_seconds}
        if uid is not None:
            options["preconditions"] = {"uid": uid}
        try:
            await self._call("DELETE", path, json=options)
        except ApiError as error:
            if error.status not in (404, 409):  # 409: a newer object of that name, not ours
                raise

    async def _call(self, method: str, path: str, *, content_type: str = "application/json", **kwargs: Any) -> Any:
        headers = {**self._headers, **({"Content-Type": content_type} if "json" in kwargs else {})}
        async with self._session.request(
            method, self._server + path, headers=headers, ssl=self._ssl, **kwargs
        ) as response:
            body = await response.json(content_type=None)
            if response.status >= 400:
                raise ApiError(response.status, body)
            return body
