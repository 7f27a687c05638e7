"""The emulated API server alone (no controller, no node), for tests of its own behaviour."""

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.support.api_client import ApiClient
from tests.support.emulated_api import EmulatedApiServer, Validator, crd_files, serving
from tests.support.kubeconfig import write_kubeconfig


@dataclass(frozen=True)
class ApiUnderTest:
    api: EmulatedApiServer
    url: str
    kubeconfig: Path
    client: ApiClient
    session: aiohttp.ClientSession  # for requests the ApiClient does not make


@contextlib.asynccontextmanager
async def emulated_api(directory: Path, validators: Mapping[str, Validator] | None = None) -> AsyncIterator[ApiUnderTest]:
    api = EmulatedApiServer(validators=validators or {})
    async with serving(api) as url, aiohttp.ClientSession() as session:
        await api.create_crds(crd_files())
        yield ApiUnderTest(api, url, write_kubeconfig(directory / "kubeconfig", url), ApiClient(session, url), session)
