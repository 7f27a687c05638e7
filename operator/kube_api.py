"""The few Kubernetes API calls the operator makes beyond kopf's own (children, pods, the lease),
over aiohttp with the same credentials kopf logs in with (in-cluster service account, else
KUBECONFIG / ~/.kube/config; exec credential plugins are not supported)."""

import base64
import ssl
import tempfile
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
import kopf

from shoal.constants import API_VERSION, PLURAL

MERGE_PATCH = "application/merge-patch+json"


class KubeApiError(RuntimeError):
    def __init__(self, status: int, method: str, path: str, body: str):
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")
        self.status = status


@dataclass(frozen=True)
class Resource:
    """Where objects of one kind live: e.g. Resource('apis/apps/v1', 'deployments')."""

    prefix: str
    plural: str

    def path(self, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
        path = f"/{self.prefix}/namespaces/{quote(namespace)}/{self.plural}"
        if name is not None:
            path += f"/{quote(name)}"
        return path + (f"/{subresource}" if subresource else "")


DEPLOYMENTS = Resource("apis/apps/v1", "deployments")
SERVICES = Resource("api/v1", "services")
PODS = Resource("api/v1", "pods")
SECRETS = Resource("api/v1", "secrets")
MODELPOOLS = Resource(f"apis/{API_VERSION}", PLURAL)


def login(settings: kopf.OperatorSettings | None = None) -> kopf.ConnectionInfo:
    settings = settings or kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise RuntimeError("no Kubernetes credentials: not in a pod, and no KUBECONFIG or ~/.kube/config")
    return info


class KubeApi:
    def __init__(self, info: kopf.ConnectionInfo):
        self.server = info.server.rstrip("/")
        headers = {"Accept": "application/json"}
        if info.token:
            headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        auth = aiohttp.BasicAuth(info.username, info.password or "") if info.username else None
        self._session = aiohttp.ClientSession(
            headers=headers, auth=auth, connector=aiohttp.TCPConnector(ssl=_ssl_context(info))
        )

    async def close(self) -> None:
        await self._session.close()

    async def list(self, resource: Resource, namespace: str, label_selector: str | None = None) -> list[dict]:
        params = {"labelSelector": label_selector} if label_selector else None
        return (await self._call("GET", resource.path(namespace), params=params)).get("items") or []

    async def get(self, resource: Resource, namespace: str, name: str) -> dict | None:
        try:
            return await self._call("GET", resource.path(namespace, name))
        except KubeApiError as error:
            if error.status == 404:
                return None
            raise

    async def create(self, resource: Resource, namespace: str, body: dict) -> dict:
        return await self._call("POST", resource.path(namespace), json=body)

    async def replace(self, resource: Resource, namespace: str, name: str, body: dict) -> dict:
        """PUT: with body's metadata.resourceVersion, a 409 if the object changed since it was read."""
        return await self._call("PUT", resource.path(namespace, name), json=body)

    async def merge_patch(
        self, resource: Resource, namespace: str, name: str, patch: dict, subresource: str | None = None
    ) -> dict:
        path = resource.path(namespace, name, subresource)
        return await self._call("PATCH", path, json=patch, headers={"Content-Type": MERGE_PATCH})

    async def delete(self, resource: Resource, namespace: str, name: str) -> None:
        try:
            await self._call("DELETE", resource.path(namespace, name), json={"propagationPolicy": "Background"})
        except KubeApiError as error:
            if error.status != 404:  # already gone is what we wanted
                raise

    async def _call(self, method: str, path: str, **kwargs) -> dict:
        async with self._session.request(method, self.server + path, **kwargs) as response:
            text = await response.text()
            if response.status >= 400:
                raise KubeApiError(response.status, method, path, text)
            return await response.json(content_type=None) if text else {}


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if not info.server.startswith("https"):
        return False
    if info.insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        ca_data = base64.b64decode(info.ca_data).decode() if info.ca_data else None
        context = ssl.create_default_context(cafile=info.ca_path, cadata=ca_data)
    if info.certificate_path or info.certificate_data:
        context.load_cert_chain(
            _file(info.certificate_path, info.certificate_data), _file(info.private_key_path, info.private_key_data)
        )
    return context


def _file(path: str | None, data: bytes | str | None) -> str | None:
    """ssl wants files; kubeconfig may inline the certificate and key as base64."""
    if path or not data:
        return path
    raw = base64.b64decode(data)
    handle = tempfile.NamedTemporaryFile(prefix="shoal-operator-", delete=False)  # lives as long as the process
    handle.write(raw)
    handle.close()
    return handle.name
