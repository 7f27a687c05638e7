"""The registry: channels for new endpoints, removed ones retired only after their requests finish."""

import asyncio
import random

from shoal.router.backends.endpoints import Endpoint
from shoal.router.backends.registry import UNREADY_AFTER_FAILED_SCRAPES, BackendRegistry

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
        broken.failed_scrapes = UNREADY_AFTER_FAILED_SCRAPES
        picks = {registry.pick("p", "v1").endpoint for _ in range(20)}
        for backend in registry.backends():
            backend.failed_scrapes = UNREADY_AFTER_FAILED_SCRAPES
        fallback = registry.pick("p", "v1")  # none ready: still try one
        await registry.close_all()
        return broken, picks, fallback

    broken, picks, fallback = asyncio.run(main())
    assert picks == {A, B} - {broken.endpoint} and fallback is not None


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
