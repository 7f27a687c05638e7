"""Who among the operator's replicas acts: the decisions of leader election on a Lease, as
client-go's leaderelection package makes them (controller-runtime's `--leader-elect`), as pure
functions. leader_lease.py reads and writes the Lease and keeps time.

A candidate reads the Lease every retry period. It takes it when nobody holds it, or when the
record has not changed for the holder's leaseDurationSeconds *by the candidate's own clock*: expiry
is judged from when this replica last saw the record change, never from the renewTime written by
another machine, so clock skew between nodes cannot hand the lease to two replicas. The holder
renews every retry period; if no renewal succeeds within the renew deadline (shorter than the
lease), it must stop acting before anyone else may start.
"""

import enum
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Timing:
    lease_duration_s: float = 15.0  # how long a silent holder keeps the lease, in others' eyes
    renew_deadline_s: float = 10.0  # the holder gives up acting if it could not renew for this long
    retry_period_s: float = 2.0  # between attempts to acquire or renew

    def __post_init__(self):
        # client-go's own checks: a holder must stop acting (renew deadline) before the others
        # may take over (lease duration), with room for more than one attempt.
        if not self.lease_duration_s > self.renew_deadline_s > self.retry_period_s * 1.2 > 0:
            raise ValueError(
                "leader election needs lease duration > renew deadline > 1.2 x retry period > 0, got "
                f"{self.lease_duration_s:g}s, {self.renew_deadline_s:g}s, {self.retry_period_s:g}s"
            )


@dataclass(frozen=True)
class LeaderElectionSettings:
    namespace: str  # where the Lease lives
    name: str  # the Lease's name: the replicas of one operator share it
    identity: str  # this replica's, unique among them
    timing: Timing = Timing()


@dataclass(frozen=True)
class LeaseRecord:
    """The Lease's spec: holderIdentity (None: released), leaseDurationSeconds, acquireTime and
    renewTime (Unix seconds, the writer's clock), leaseTransitions."""

    holder: str | None
    lease_duration_s: int
    acquire_time: float | None = None
    renew_time: float | None = None
    transitions: int = 0


@dataclass(frozen=True)
class Observation:
    """The record as this replica last saw it change, and when (its monotonic clock)."""

    record: LeaseRecord
    at: float


class Action(enum.Enum):
    CREATE = "create"  # no Lease yet: create it, holding it
    TAKE = "take"  # update it: nobody holds it, or its holder has gone silent
    RENEW = "renew"  # update it: we hold it
    WAIT = "wait"  # someone else holds it, and has renewed recently enough


@dataclass(frozen=True)
class Decision:
    action: Action
    record: LeaseRecord | None  # what to write; None with WAIT
    observed: Observation | None  # what to remember for the next attempt


def observe(previous: Observation | None, current: LeaseRecord, now: float) -> Observation:
    """The clock for expiry restarts only when the record changes."""
    if previous is not None and previous.record == current:
        return previous
    return Observation(current, now)


def decide(
    current: LeaseRecord | None, previous: Observation | None, identity: str, now: float, wall: float, timing: Timing
) -> Decision:
    """One attempt to acquire or renew. `current`: the Lease as read (None: there is none); `now`:
    the monotonic clock; `wall`: Unix time, for the timestamps written."""
    duration = max(1, round(timing.lease_duration_s))
    if current is None:
        return Decision(Action.CREATE, LeaseRecord(identity, duration, wall, wall, 0), None)
    observed = observe(previous, current, now)
    if current.holder == identity:
        return Decision(Action.RENEW, replace(current, lease_duration_s=duration, renew_time=wall), observed)
    if current.holder and now < observed.at + current.lease_duration_s:
        return Decision(Action.WAIT, None, observed)
    taken = LeaseRecord(identity, duration, wall, wall, current.transitions + 1)
    return Decision(Action.TAKE, taken, observed)


def released(current: LeaseRecord, identity: str, wall: float) -> LeaseRecord | None:
    """What a holder that stops on purpose writes, so a successor need not wait out the lease
    (client-go's ReleaseOnCancel); None when the lease is not ours to release."""
    if current.holder != identity:
        return None
    return replace(current, holder=None, lease_duration_s=1, renew_time=wall)


def leadership_lost(last_renewal: float, now: float, timing: Timing) -> bool:
    """The holder has not renewed within the deadline: others may take over soon, so it stops."""
    return now - last_renewal >= timing.renew_deadline_s
