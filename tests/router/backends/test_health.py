"""The health prober: a runtime is serving while its gRPC Health says so, and not once it says
NOT_SERVING or cannot be reached; each change is reported to the registry's on_change (held
requests go on when a runtime turns ready)."""

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
        changes = []
        registry.on_change.append(lambda: changes.append({b.endpoint.target: b.ready for b in registry.backends()}))
        seen = []
        for serving in (True, True, False):
            fake.serving = serving
            await prober.probe_once()
            seen.append({b.endpoint.target: b.ready for b in registry.backends()})
        await fake.stop()
        await registry.close_all()
        return fake.target, seen, changes

    target, seen, changes = asyncio.run(main())
    up, down = {target: True, "127.0.0.1:1": False}, {target: False, "127.0.0.1:1": False}
    assert seen == [up, up, down]
    assert changes == [up, down]  # once per change, not per probe


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
