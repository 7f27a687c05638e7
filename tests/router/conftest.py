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


MODEL = "SmolLM2-135M-Instruct"
RUNTIME_FLAGS = ("--kv-cache-memory", "128MiB", "--max-num-batched-tokens", "512", "--pool", "chat")


def start_runtimes(*revision_flags: tuple[str, ...]) -> list:
    """Real `shoal runtime` processes on the embedded model, started together, returned ready."""
    from shoal.runtime.model.loader import materialize, resolve_model_source
    from tests.runtime.server_process import RuntimeProcess

    materialize(resolve_model_source("default"))  # convert once, before several processes want it
    processes = [RuntimeProcess(*RUNTIME_FLAGS, *flags) for flags in revision_flags]
    try:
        return [p.wait_ready() for p in processes]
    except BaseException:
        for p in processes:
            p.stop()
        raise


@pytest.fixture(scope="session")
def stable_runtime():
    """One runtime serving revision r1 of pool `chat`, shared by the end-to-end router tests."""
    (runtime,) = start_runtimes(("--revision", "r1"))
    yield runtime
    runtime.stop()


@pytest.fixture(scope="module")
def stable_router(stable_runtime):
    """`shoal router` in front of the stable runtime, pool `chat` serving MODEL; one per test module."""
    from tests.router.harness import RouterProcess, pool

    router = RouterProcess([pool("chat", {"r1": [stable_runtime]}, model=MODEL)]).wait_ready()
    yield router
    assert router.stop() == 0, router.logs()


@pytest.fixture(scope="module")
def sdk_client(stable_router):
    """The official OpenAI SDK, as the quiet tenant, against stable_router."""
    import openai

    return openai.OpenAI(base_url=stable_router.base_url + "/v1", api_key="sk-test-quiet", max_retries=0, timeout=60)
