"""Two operator replicas with --leader-elect on the real API (short leases, as flags allow): only
the replica holding the Lease acts, which the audit log shows by each replica's own token; killed,
it is replaced by the other within the lease duration and the pools keep being reconciled; frozen
past its lease, it finds another holding it when it wakes, and exits rather than act beside it;
stopped cleanly, it hands the Lease over at once."""

import asyncio
import time

import pytest

from tests.operator.harness import (
    POOL,
    LeaderElection,
    admin_url,
    lease_holder,
    modelpool,
    pool_status,
    pools,
    running_operator,
)
from tests.support.operator_account import WRITES, requests_of, token
from tests.support.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
LEASE = ("coordination.k8s.io", "leases")


async def held_by(api, election: LeaderElection, replica: str, timeout: float) -> float:
    """Seconds until `replica` holds the lease."""
    started = time.monotonic()
    await eventually(
        lambda: lease_holder(api, election),
        lambda holder: (holder or "").startswith(f"{replica}_"),
        timeout=timeout,
        what=f"{replica} holding the lease",
    )
    return time.monotonic() - started


async def test_only_the_leader_acts_and_the_other_takes_over_when_it_dies(
    operator_rbac, namespace, api, router, tmp_path
):
    plane, election = operator_rbac, LeaderElection(f"leader-{namespace}")
    a, b = token(plane, tmp_path / "a.kubeconfig"), token(plane, tmp_path / "b.kubeconfig")
    run = {"router_admin_url": admin_url(router), "namespaces": [namespace], "leader_election": election}
    async with running_operator(a.kubeconfig, log=tmp_path / "a.log", name="replica-a", **run) as replica_a:
        await held_by(api, election, "replica-a", timeout=10)
        async with running_operator(b.kubeconfig, log=tmp_path / "b.log", name="replica-b", **run):
            await api.create(pools(namespace), modelpool("v1"))
            await eventually(
                lambda: pool_status(api, namespace), lambda s: s.get("phase") == "Ready", timeout=30, what="pool Ready"
            )

            # The audit log, by token: the leader wrote children and status; the standby only
            # read the Lease (every retry period), and wrote nothing at all.
            a_used = {r.permission for r in requests_of(plane, a)}
            assert {("apps", "deployments", "create"), ("shoal.dev", "modelpools/status", "patch")} <= a_used
            assert {r.permission for r in requests_of(plane, b) if r.resource} == {(*LEASE, "get")}

            await replica_a.kill()
            takeover_s = await held_by(api, election, "replica-b", timeout=election.lease_duration_s + 10)
            print(
                f"replica-b took over {takeover_s:.1f}s after replica-a was killed (lease "
                f"{election.lease_duration_s:g}s)"
            )
            # Not before the lease ran out in its eyes (it last saw a renewal up to a retry period or
            # two before the kill), and soon after (a retry period or two, and this test's polling).
            slack = 2 * election.retry_period_s + 1
            assert election.lease_duration_s - slack <= takeover_s <= election.lease_duration_s + slack

            # The pool keeps being reconciled, by the new leader.
            await api.merge_patch(pools(namespace, POOL), {"spec": {"replicas": 3}})
            await eventually(
                lambda: pool_status(api, namespace),
                lambda s: s.get("readyReplicas") == 3 and s.get("phase") == "Ready",
                timeout=30,
                what="scaled by replica-b",
            )
            writes = {r.permission for r in requests_of(plane, b) if r.verb in WRITES}
            assert ("apps", "deployments", "patch") in writes and (*LEASE, "update") in writes


async def test_a_leader_that_could_not_renew_exits_and_a_clean_stop_hands_over_at_once(
    operator_rbac, namespace, api, router, tmp_path
):
    plane, election = operator_rbac, LeaderElection(f"leader-{namespace}")
    run = {"router_admin_url": admin_url(router), "namespaces": [namespace], "leader_election": election}
    kubeconfigs = {
        name: token(plane, tmp_path / f"{name}.kubeconfig").kubeconfig
        for name in ("replica-a", "replica-b", "replica-c")
    }
    async with running_operator(kubeconfigs["replica-a"], log=tmp_path / "a.log", name="replica-a", **run) as replica_a:
        await held_by(api, election, "replica-a", timeout=10)
        async with running_operator(
            kubeconfigs["replica-b"], log=tmp_path / "b.log", name="replica-b", **run
        ) as replica_b:
            # Frozen (a stalled node, a long GC pause): it cannot renew; the other takes over.
            replica_a.freeze()
            await held_by(api, election, "replica-b", timeout=election.lease_duration_s + 10)
            replica_a.thaw()
            # Awake, it sees the lease held by another: it exits non-zero, to come back as a candidate.
            code = await asyncio.wait_for(replica_a.process.wait(), timeout=election.renew_deadline_s + 5)
            assert code == 1 and "leader election lost" in replica_a.log.read_text()

            # replica-b acts: a pool is served.
            await api.create(pools(namespace), modelpool("v1", replicas=1))
            await eventually(
                lambda: pool_status(api, namespace), lambda s: s.get("phase") == "Ready", timeout=30, what="pool Ready"
            )

            async with running_operator(kubeconfigs["replica-c"], log=tmp_path / "c.log", name="replica-c", **run):
                await asyncio.sleep(2 * election.retry_period_s)  # a candidate that has seen the lease renewed
                replica_b.process.terminate()  # SIGTERM, as a rolling update sends: kopf stops, the lease is released
                stopped = time.monotonic()
                assert await asyncio.wait_for(replica_b.process.wait(), timeout=30) == 0
                await held_by(api, election, "replica-c", timeout=election.lease_duration_s)
                handover_s = time.monotonic() - stopped
                print(f"replica-c took over {handover_s:.1f}s after replica-b was told to stop")
                assert handover_s < election.lease_duration_s  # it did not wait the lease out
                await api.merge_patch(pools(namespace, POOL), {"spec": {"replicas": 2}})
                await eventually(
                    lambda: pool_status(api, namespace),
                    lambda s: s.get("readyReplicas") == 2,
                    timeout=30,
                    what="scaled by replica-c",
                )
