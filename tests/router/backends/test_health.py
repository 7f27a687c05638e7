"""The health prober: a runtime is serving while its gRPC Health says so, and not once it says
NOT_SERVING or cannot be reached."""

import asyncio

from shoal.router.backends.endpoints import Endpoint
from shoal.router.backends.health import HealthProber
from shoal.router.backends.registry import BackendRegistry
from tests.router.fake_runtime import FakeRuntime


def test_probes_mark_backends_serving_or_not():
    async def main():
        fake = await FakeRuntime().start()
        registry = BackendRegistry()
        registry.apply(frozenset({Endpoint("p", "v1", fake.target), Endpoint("p", "v1", "127.0.0.1:1")}))
        prober = HealthProber(registry, interval_s=1.0, timeout_s=1.0)
        seen = []
        for serving in (True, False):
            fake.serving = serving
            await prober.probe_once()
            seen.append({b.endpoint.target: b.ready for b in registry.backends()})
        await fake.stop()
        await registry.close_all()
        return fake.target, seen

    target, seen = asyncio.run(main())
    assert seen == [{target: True, "127.0.0.1:1": False}, {target: False, "127.0.0.1:1": False}]


def test_a_backend_removed_while_probed_does_not_stop_the_prober():
    class SlowHealth(FakeRuntime):
        async def Health(self, request, context):
            await asyncio.sleep(5)

    async def main():
        fake = await SlowHealth().start()
        registry = BackendRegistry()
        registry.apply(frozenset({Endpoint("p", "v1", fake.target)}))
        probing = asyncio.create_task(HealthProber(registry, interval_s=1.0, timeout_s=10.0).probe_once())
        await asyncio.sleep(0.3)
        registry.apply(frozenset())  # retired and idle: its channel closes under the probe
        await asyncio.wait_for(probing, 5)  # returns: the cancellation was the channel's, not the prober's
        await fake.stop()
        await registry.close_all()

    asyncio.run(main())
