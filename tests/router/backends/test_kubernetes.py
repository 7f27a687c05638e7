"""Endpoints from EndpointSlices, through the in-memory watch (no API server on these machines)."""

import asyncio

from shoal.router.backends.endpoints import Endpoint
from shoal.router.backends.kubernetes import InMemoryEndpointSliceWatch, KubernetesEndpointSource, endpoints_of_slice


def endpoint_slice(name: str, revision: str, addresses: dict[str, bool], pool: str = "chat") -> dict:
    return {
        "metadata": {
            "name": name,
            "namespace": "ml",
            "labels": {"shoal.dev/pool": pool, "shoal.dev/revision": revision},
        },
        "addressType": "IPv4",
        "ports": [{"name": "grpc", "port": 50051}, {"name": "metrics", "port": 8001}],
        "endpoints": [{"addresses": [a], "conditions": {"ready": ready}} for a, ready in addresses.items()],
    }


def test_ready_addresses_become_endpoints_with_their_ports():
    found = endpoints_of_slice(endpoint_slice("s1", "v2", {"10.0.0.1": True, "10.0.0.2": False, "fd00::3": True}))
    assert found == {
        Endpoint("chat", "v2", "10.0.0.1:50051", "http://10.0.0.1:8001/metrics"),
        Endpoint("chat", "v2", "[fd00::3]:50051", "http://[fd00::3]:8001/metrics"),
    }


def test_slices_without_pool_labels_or_grpc_port_are_ignored():
    unlabelled = endpoint_slice("s", "v1", {"10.0.0.1": True})
    unlabelled["metadata"]["labels"] = {}
    assert endpoints_of_slice(unlabelled) == frozenset()
    no_port = endpoint_slice("s", "v1", {"10.0.0.1": True})
    no_port["ports"] = [{"name": "http", "port": 80}]
    assert endpoints_of_slice(no_port) == frozenset()


def test_the_source_publishes_the_whole_set_on_every_change():
    async def main():
        watch = InMemoryEndpointSliceWatch()
        published = []
        task = asyncio.create_task(KubernetesEndpointSource(watch).run(published.append))
        watch.put("ADDED", endpoint_slice("stable", "v1", {"10.0.0.1": True}))
        watch.put("ADDED", endpoint_slice("canary", "v2", {"10.0.0.2": True}))
        watch.put("MODIFIED", endpoint_slice("canary", "v2", {"10.0.0.2": False, "10.0.0.3": True}))
        watch.put("BOOKMARK", {"metadata": {}})
        watch.put("MODIFIED", endpoint_slice("canary", "v2", {"10.0.0.2": False, "10.0.0.3": True}))  # no change
        watch.put("DELETED", endpoint_slice("stable", "v1", {}))
        await asyncio.sleep(0.05)
        task.cancel()
        return published

    published = asyncio.run(main())
    targets = [sorted(e.target for e in snapshot) for snapshot in published]
    assert targets == [
        [],
        ["10.0.0.1:50051"],
        ["10.0.0.1:50051", "10.0.0.2:50051"],
        ["10.0.0.1:50051", "10.0.0.3:50051"],
        ["10.0.0.3:50051"],
    ]
