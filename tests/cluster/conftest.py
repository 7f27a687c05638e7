"""The local node's tests on the real control plane talk to it as the admin."""

from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio

from tests.support.api_client import ApiClient
from tests.support.cluster import Cluster


@pytest_asyncio.fixture
async def api(cluster: Cluster) -> AsyncIterator[ApiClient]:
    async with aiohttp.ClientSession() as session:
        yield ApiClient(session, cluster.plane.admin)
