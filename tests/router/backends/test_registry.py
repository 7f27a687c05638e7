"""The registry: channels for new endpoints, removed ones retired only after their requests finish."""

import asyncio
import random

from shoal.router.backends.endpoints import Endpoint
from shoal.router.backends.registry import STALE_AFTER_FAILED_SCRAPES, BackendRegistry, ScrapedLoad

A, B = Endpoint("p", "v1", "127.0.0.1:1"), Endpoint("p", "v1", "127.0.0.1:2")
C = Endpoint("p", "v2", "127.0.0.1:3")


def test_apply_adds_and_retires_and_picks_by_revision():
    async def main():
        registry = BackendRegistry(random.Random(0))
        changes = []
        registry.on_change.append(lambda: changes.append(1))
        registry.apply(frozenset({A, B, C}))
        assert registry.revisions("p") == {"v1", "v2"}
        assert registry.pick("p", "v2").endpoint == C and registry.pick("p", "v3") is None
        busy = registry.pick("p", "v1")
        busy.outstanding += 1
        registry.apply(frozenset({A, C} if busy.endpoint == B else {B, C}))
        assert busy.retired and not busy.ready and busy not in registry.backends()
        assert len(registry._retiring) == 1  # its channel stays open: a request is in flight there
        registry.release(busy)
        assert registry._retiring == []
        await registry.close_all()
        return changes

    assert len(asyncio.run(main())) == 2


def test_unready_backends_are_avoided_while_a_ready_one_exists():
    async def main():
        registry = BackendRegistry(random.Random(0))
        registry.apply(frozenset({A, B}))
        for backend in registry.backends():
            backend.serving = True  # as the health prober found
        broken = registry.backends("p", "v1")[0]
        broken.serving = False
        picks = {registry.pick("p", "v1").endpoint for _ in range(20)}
        for backend in registry.backends():
            backend.serving = False
        fallback = registry.pick("p", "v1")  # none ready: still try one
        await registry.close_all()
        return broken, picks, fallback

    broken, picks, fallback = asyncio.run(main())
    assert picks == {A, B} - {broken.endpoint} and fallback is not None


def test_a_runtime_whose_metrics_fail_stays_ready_and_its_stale_load_is_forgotten():
    async def main():
        registry = BackendRegistry(random.Random(0))
        registry.apply(frozenset({A}))
        (backend,) = registry.backends()
        backend.serving = True
        backend.scraped = ScrapedLoad(kv_usage=0.9, waiting=40)
        fresh = backend.load()
        backend.failed_scrapes = STALE_AFTER_FAILED_SCRAPES
        stale = backend.load()
        await registry.close_all()
        return backend, fresh, stale

    backend, fresh, stale = asyncio.run(main())
    assert backend.ready and backend.metrics_failing
    assert (fresh.kv_usage, fresh.waiting) == (0.9, 40) and (stale.kv_usage, stale.waiting) == (0.0, 0)


def test_a_backend_is_ready_only_once_its_health_probe_says_serving():
    async def main():
        registry = BackendRegistry(random.Random(0))
        registry.apply(frozenset({A}))
        (backend,) = registry.backends()
        before = backend.ready  # not probed yet
        backend.serving = True
        after = backend.ready
        await registry.close_all()
        return before, after

    assert asyncio.run(main()) == (False, True)
