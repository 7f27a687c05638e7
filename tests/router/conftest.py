"""Fixtures for the router tests: an event loop thread for in-process servers, fake runtimes on it,
and real runtime processes serving the embedded model (started once per session, on demand)."""

import pytest

from tests.router.fake_runtime import FakeRuntime
from tests.router.harness import LoopThread


@pytest.fixture(scope="module")
def loop_thread():
    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture
def start_fake(loop_thread):
    """Starts fake runtimes on the loop thread; stops them after the test."""
    started = []

    def start(**settings) -> FakeRuntime:
        fake = loop_thread.run(FakeRuntime(**settings).start())
        started.append(fake)
        return fake

    yield start
    for fake in started:
        loop_thread.run(fake.stop())
