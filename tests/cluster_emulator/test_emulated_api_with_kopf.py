"""kopf (the operator's framework) against the emulated API server: discovery, watches, status
patches, finalizers and deletion handlers work as they would against a cluster."""

import asyncio
import contextlib
import logging
import threading

import kopf
import pytest

from tests.cluster_emulator.servers import emulated_api
from tests.support.api_client import ApiError
from tests.support.api_paths import object_path
from tests.support.polling import eventually

pytestmark = pytest.mark.asyncio

POOLS = object_path("shoal.dev/v1alpha1", "modelpools", "default")


@contextlib.asynccontextmanager
async def operator(registry: kopf.OperatorRegistry):
    """kopf on an event loop of its own thread, as kopf's docs embed it: on exit, kopf stops
    (after 5 s, by cancelling) every task created on its loop after it started, and on this loop
    those would be the emulated API server's."""
    settings = kopf.OperatorSettings()
    settings.posting.level = logging.WARNING
    stop = threading.Event()
    thread = threading.Thread(target=asyncio.run, args=(kopf.operator(registry=registry, settings=settings, clusterwide=True, standalone=True, stop_flag=stop),))
    thread.start()
    try:
        yield
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 30)


@pytest.mark.timeout(60)
async def test_emulated_api_serves_a_kopf_operator(tmp_path, monkeypatch):
    registry = kopf.OperatorRegistry()
    deleted: list[str] = []

    @kopf.on.login(registry=registry)
    def login(**kwargs):
        return kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.create("shoal.dev", "v1alpha1", "modelpools", registry=registry)
    def created(spec, patch, **_):
        patch.status["seenRevision"] = spec["model"]["revision"]

    @kopf.on.update("shoal.dev", "v1alpha1", "modelpools", field="spec.model", registry=registry)
    def updated(spec, patch, **_):
        patch.status["seenRevision"] = spec["model"]["revision"]

    @kopf.on.delete("shoal.dev", "v1alpha1", "modelpools", registry=registry)
    def removed(name, **_):
        deleted.append(name)

    async with emulated_api(tmp_path) as cluster:
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
        async with operator(registry):
            body = {"metadata": {"name": "chat"}, "spec": {"model": {"revision": "r1"}}}
            await cluster.client.create(POOLS, {"apiVersion": "shoal.dev/v1alpha1", "kind": "ModelPool", **body})
            seen = await eventually(lambda: cluster.client.get(f"{POOLS}/chat"), lambda p: p.get("status", {}).get("seenRevision") == "r1", what="the create handler")
            assert seen["metadata"]["finalizers"] and seen["metadata"]["generation"] == 1

            await cluster.client.merge_patch(f"{POOLS}/chat", {"spec": {"model": {"revision": "r2"}}})
            await eventually(lambda: cluster.client.get(f"{POOLS}/chat"), lambda p: p.get("status", {}).get("seenRevision") == "r2", what="the update handler")

            await cluster.client.delete(f"{POOLS}/chat")

            async def gone() -> bool:
                try:
                    await cluster.client.get(f"{POOLS}/chat")
                except ApiError as error:
                    return error.status == 404
                return False

            await eventually(gone, bool, what="the deletion, once kopf removed its finalizer")
            assert deleted == ["chat"]
