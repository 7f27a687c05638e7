"""The Lease as leader_lease.py reads and writes it: the record's round trip, where it lives by
default, and candidates racing on the real API server, of which exactly one wins (the others'
create or update of the same version is refused with a conflict)."""

import asyncio
import uuid

import kopf
import pytest

from shoal.operator.kube_api import KubeApi
from shoal.operator.leader_election import LeaderElectionSettings, LeaseRecord, Timing
from shoal.operator.leader_lease import LeaderElector, default_identity, default_namespace, lease_body, record_of

TIMING = Timing(lease_duration_s=3, renew_deadline_s=2, retry_period_s=0.5)


def test_a_record_survives_the_lease_body_round_trip():
    record = LeaseRecord("op-1_abc", 15, acquire_time=1_800_000_000.123456, renew_time=1_800_000_010.5, transitions=3)
    settings = LeaderElectionSettings("shoal-system", "shoal-operator", "op-1_abc")
    body = lease_body(settings, record, {"metadata": {"resourceVersion": "42"}})
    assert body["metadata"] == {"name": "shoal-operator", "namespace": "shoal-system", "resourceVersion": "42"}
    assert body["spec"]["renewTime"] == "2027-01-15T08:00:10.500000Z"  # MicroTime
    assert record_of(body) == record
    released = lease_body(settings, LeaseRecord(None, 1, renew_time=1_800_000_000.0))
    assert "holderIdentity" not in released["spec"] and record_of(released).holder is None


def test_the_lease_lives_in_the_pods_namespace_else_shoal_system(tmp_path):
    account = tmp_path / "namespace"
    assert default_namespace({"POD_NAMESPACE": "ops"}, account) == "ops"
    account.write_text("from-the-account\n")
    assert default_namespace({}, account) == "from-the-account"
    assert default_namespace({}, tmp_path / "missing") == "shoal-system"


def test_each_start_is_a_new_candidate():
    first, second = (
        default_identity({"POD_NAME": "shoal-operator-7d9f"}),
        default_identity({"POD_NAME": "shoal-operator-7d9f"}),
    )
    assert first.startswith("shoal-operator-7d9f_") and first != second


@pytest.mark.integration
@pytest.mark.asyncio
async def test_of_candidates_racing_for_a_new_lease_exactly_one_wins(operator_rbac):
    plane = operator_rbac
    admin = plane.admin
    info = kopf.ConnectionInfo(
        server=admin.server,
        ca_path=str(admin.ca_file),
        certificate_path=str(admin.cert_file),
        private_key_path=str(admin.key_file),
    )
    name = f"race-{uuid.uuid4().hex[:8]}"
    kubes = [KubeApi(info) for _ in range(4)]
    electors = [
        LeaderElector(kube, LeaderElectionSettings("shoal-system", name, f"candidate-{i}", TIMING))
        for i, kube in enumerate(kubes)
    ]
    try:
        tasks = [asyncio.create_task(elector.acquire()) for elector in electors]
        done, pending = await asyncio.wait(tasks, timeout=TIMING.retry_period_s, return_when=asyncio.FIRST_COMPLETED)
        (winner,) = [e for e, t in zip(electors, tasks, strict=True) if t in done]
        holding = asyncio.create_task(winner.hold())  # renews, as the operator does once it leads
        await asyncio.sleep(2 * TIMING.lease_duration_s)  # the others keep waiting, past the lease duration
        assert [t for t in tasks if t.done()] == list(done)
        holding.cancel()
        await winner.release()  # ...until it hands the lease back: then one of them takes it
        done, pending = await asyncio.wait(pending, timeout=2 * TIMING.retry_period_s + 0.5)
        assert len(done) == 1
        for task in [*pending, holding]:
            task.cancel()
        await asyncio.gather(*tasks, holding, return_exceptions=True)
    finally:
        for kube in kubes:
            await kube.close()
