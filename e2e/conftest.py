"""The e2e tests' system: the whole of Shoal on the test cluster (local_system.py)."""

from collections.abc import AsyncIterator

import pytest_asyncio

from e2e.local_system import LocalSystem, local_system


@pytest_asyncio.fixture
async def system(cluster, namespace, tmp_path) -> AsyncIterator[LocalSystem]:
    async with local_system(cluster, namespace, tmp_path) as running:
        try:
            yield running
        finally:  # pytest shows this only when the test fails
            print(running.log_tails())
