"""Leader election's I/O: reads and writes the coordination.k8s.io/v1 Lease and keeps time; the
decisions are leader_election.py's.

    elector = LeaderElector(kube, settings)
    await elector.acquire()  # returns once this replica holds the lease
    await elector.hold()  # renews until it cannot; then raises LeadershipLost

Writes are updates of the version read (optimistic concurrency: a 409 means another replica
wrote first, and this attempt failed), so two candidates can never both believe they took it.
"""

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import aiohttp

from shoal.operator.kube_api import KubeApi, KubeApiError, Resource
from shoal.operator.leader_election import (
    Action,
    LeaderElectionSettings,
    LeaseRecord,
    Observation,
    decide,
    leadership_lost,
    released,
)

LEASES = Resource("apis/coordination.k8s.io/v1", "leases")
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_NAMESPACE = "shoal-system"
_MICRO_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"
log = logging.getLogger(__name__)


class LeadershipLost(RuntimeError):
    """This replica may no longer act: it could not renew the lease in time, or another holds it."""


def default_namespace(environ: Mapping[str, str] | None = None, account_file: Path = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """The pod's namespace (POD_NAMESPACE from the downward API, else the service account's), else
    shoal-system: run outside a cluster, the operator elects where the chart would have put it."""
    environ = os.environ if environ is None else environ
    if environ.get("POD_NAMESPACE"):
        return environ["POD_NAMESPACE"]
    try:
        return account_file.read_text().strip() or DEFAULT_NAMESPACE
    except OSError:
        return DEFAULT_NAMESPACE


def default_identity(environ: Mapping[str, str] | None = None) -> str:
    """The pod's name (POD_NAME, else the host name, which is the pod's) and a random suffix, as
    controller-runtime does: a restarted container is a new candidate, not the old holder."""
    environ = os.environ if environ is None else environ
    return f"{environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:12]}"


class LeaderElector:
    def __init__(self, kube: KubeApi, settings: LeaderElectionSettings):
        self.kube, self.settings = kube, settings
        self._observed: Observation | None = None
        self._last_renewal: float | None = None  # when this replica last wrote the lease as holder (monotonic)

    async def acquire(self, stopping: Callable[[], bool] = lambda: False) -> bool:
        """Try every retry period until this replica holds the lease (True) or `stopping()` (False)."""
        s = self.settings
        log.info("waiting for the lease %s/%s as %s", s.namespace, s.name, s.identity)
        while not stopping():
            if await self._attempt(s.timing.retry_period_s) in (Action.CREATE, Action.TAKE, Action.RENEW):
                log.info("acquired the lease %s/%s as %s: acting", s.namespace, s.name, s.identity)
                return True
            await asyncio.sleep(s.timing.retry_period_s)
        return False

    async def hold(self) -> NoReturn:
        """Renew every retry period; raise LeadershipLost once the renew deadline passed without a
        renewal, or as soon as the lease is seen held by another."""
        timing = self.settings.timing
        while True:
            await asyncio.sleep(timing.retry_period_s)
            assert self._last_renewal is not None, "hold() before acquire()"
            remaining = timing.renew_deadline_s - (time.monotonic() - self._last_renewal)
            action = await self._attempt(max(remaining, 0.001))
            if action is Action.WAIT:
                holder = self._observed.record.holder if self._observed else None
                self._last_renewal = None
                raise LeadershipLost(f"the lease {self.settings.namespace}/{self.settings.name} is held by {holder}")
            if action is None and leadership_lost(self._last_renewal, time.monotonic(), timing):
                self._last_renewal = None
                raise LeadershipLost(
                    f"the lease {self.settings.namespace}/{self.settings.name} was not renewed for "
                    f"{timing.renew_deadline_s:g}s"
                )

    async def release(self) -> None:
        """Hand the lease back on a clean stop, so another replica takes over without waiting it out."""
        if self._last_renewal is None:
            return
        self._last_renewal = None
        s = self.settings
        try:
            async with asyncio.timeout(s.timing.retry_period_s):
                lease = await self.kube.get(LEASES, s.namespace, s.name)
                record = released(record_of(lease), s.identity, time.time()) if lease else None
                if record is not None:
                    await self.kube.replace(LEASES, s.namespace, s.name, lease_body(s, record, lease))
                    log.info("released the lease %s/%s", s.namespace, s.name)
        except (KubeApiError, aiohttp.ClientError, OSError, TimeoutError) as error:  # it expires anyway
            log.warning("could not release the lease %s/%s: %s", s.namespace, s.name, error)

    async def _attempt(self, timeout_s: float) -> Action | None:
        """One read-decide-write; the action that took effect, or None when the read or write failed."""
        s = self.settings
        try:
            async with asyncio.timeout(timeout_s):
                lease = await self.kube.get(LEASES, s.namespace, s.name)
                now = time.monotonic()
                decision = decide(
                    record_of(lease) if lease else None, self._observed, s.identity, now, time.time(), s.timing
                )
                self._observed = decision.observed
                if decision.action is Action.CREATE:
                    await self.kube.create(LEASES, s.namespace, lease_body(s, decision.record))
                elif decision.action in (Action.TAKE, Action.RENEW):
                    await self.kube.replace(LEASES, s.namespace, s.name, lease_body(s, decision.record, lease))
        except (KubeApiError, aiohttp.ClientError, OSError, TimeoutError) as error:  # 409: another wrote first
            log.info("lease %s/%s: attempt failed: %s", s.namespace, s.name, error)
            return None
        if decision.action is not Action.WAIT:
            self._last_renewal = now
        return decision.action


def record_of(lease: dict) -> LeaseRecord:
    spec = lease.get("spec") or {}
    return LeaseRecord(
        holder=spec.get("holderIdentity") or None,
        lease_duration_s=int(spec.get("leaseDurationSeconds") or 0),
        acquire_time=_seconds(spec.get("acquireTime")),
        renew_time=_seconds(spec.get("renewTime")),
        transitions=int(spec.get("leaseTransitions") or 0),
    )


def lease_body(settings: LeaderElectionSettings, record: LeaseRecord, current: dict | None = None) -> dict:
    """The Lease to write; with `current`, an update of exactly the version read."""
    metadata = {"name": settings.name, "namespace": settings.namespace}
    if current is not None:
        metadata["resourceVersion"] = current["metadata"]["resourceVersion"]
    spec = {"leaseDurationSeconds": record.lease_duration_s, "leaseTransitions": record.transitions}
    if record.holder:
        spec["holderIdentity"] = record.holder
    for key, value in (("acquireTime", record.acquire_time), ("renewTime", record.renew_time)):
        if value is not None:
            spec[key] = datetime.fromtimestamp(value, UTC).strftime(_MICRO_TIME)
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}


def _seconds(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.strptime(
        text.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z" if "." in text else "%Y-%m-%dT%H:%M:%S%z"
    ).timestamp()
