"""Runtime endpoints from Kubernetes EndpointSlices, behind a watch interface.

The operator labels each revision's Service (and so its EndpointSlices) with `shoal.dev/pool` and
`shoal.dev/revision`, and names the runtime's ports `grpc` and `metrics`. KubernetesEndpointSource
turns the slices it is told about into endpoints: ready addresses only (a terminating pod drains).

Where the events come from is an EndpointSliceWatch: InMemoryEndpointSliceWatch is fed by tests
(and by anything else that has the objects); a watch on a real API server (GET
/apis/discovery.k8s.io/v1/endpointslices?watch=1&labelSelector=shoal.dev/pool) plugs in here when the
operator lands. There is none yet.
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from shoal.constants import POOL_LABEL, REVISION_LABEL
from shoal.router.backends.endpoints import Endpoint, Publish

GRPC_PORT_NAME = "grpc"
METRICS_PORT_NAME = "metrics"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED (as the API server sends them)
    object: dict  # the EndpointSlice, as JSON


class EndpointSliceWatch(Protocol):
    def events(self) -> AsyncIterator[WatchEvent]:
        """EndpointSlice events in order, forever (a real watch re-lists and resumes on its own)."""


class InMemoryEndpointSliceWatch:
    """A watch fed by hand: tests put EndpointSlice events, the source reads them."""

    def __init__(self):
        self._queue: asyncio.Queue[WatchEvent] = asyncio.Queue()

    def put(self, event_type: str, endpoint_slice: dict) -> None:
        self._queue.put_nowait(WatchEvent(event_type, endpoint_slice))

    async def events(self) -> AsyncIterator[WatchEvent]:
        while True:
            yield await self._queue.get()


class KubernetesEndpointSource:
    def __init__(self, watch: EndpointSliceWatch):
        self.watch = watch
        self._slices: dict[tuple[str, str], frozenset[Endpoint]] = {}

    async def run(self, publish: Publish) -> None:
        publish(frozenset())
        async for event in self.watch.events():
            if self.apply(event):
                publish(self.endpoints())

    def apply(self, event: WatchEvent) -> bool:
        """Updates the slice the event is about; True if the endpoint set changed."""
        metadata = event.object.get("metadata", {})
        key = (metadata.get("namespace", ""), metadata.get("name", ""))
        before = self._slices.get(key)
        if event.type == "DELETED":
            self._slices.pop(key, None)
        elif event.type in ("ADDED", "MODIFIED"):
            self._slices[key] = endpoints_of_slice(event.object)
        else:
            log.debug("ignoring %s event", event.type)  # BOOKMARK; ERROR makes a real watch re-list
        return self._slices.get(key) != before

    def endpoints(self) -> frozenset[Endpoint]:
        return frozenset().union(*self._slices.values())


def endpoints_of_slice(endpoint_slice: dict) -> frozenset[Endpoint]:
    """The ready runtime endpoints of one EndpointSlice; empty if it is not labelled for a pool."""
    labels = endpoint_slice.get("metadata", {}).get("labels", {}) or {}
    pool, revision = labels.get(POOL_LABEL), labels.get(REVISION_LABEL)
    ports = {p.get("name"): p.get("port") for p in endpoint_slice.get("ports") or ()}
    grpc_port, metrics_port = ports.get(GRPC_PORT_NAME), ports.get(METRICS_PORT_NAME)
    if not pool or not revision or grpc_port is None:
        return frozenset()
    found = set()
    for entry in endpoint_slice.get("endpoints") or ():
        conditions = entry.get("conditions") or {}
        if conditions.get("ready") is False or conditions.get("terminating") is True:
            continue
        for address in entry.get("addresses") or ():
            host = f"[{address}]" if ":" in address else address
            metrics = f"http://{host}:{metrics_port}/metrics" if metrics_port is not None else None
            found.add(Endpoint(pool, revision, f"{host}:{grpc_port}", metrics))
    return frozenset(found)
