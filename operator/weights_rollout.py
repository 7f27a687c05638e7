"""New weights rolled onto a pool's running replicas in place (spec.model.weights), one replica at
a time, with no new revision and no restart:

    spec names weights V at P -> for each replica not reporting V, in turn: out of the route (when
    another replica of its revision serves), pause once what it runs has finished
    (PAUSE_MODE_WAIT), UpdateWeights(P, V), resume, back in the route -> every replica reports V
    the runtime refuses the weights (INVALID_ARGUMENT) -> resumed on its old weights; the rejection
    is kept in status and not tried again until the spec names other weights
    a replica found paused with no step of ours on it (an operator stopped mid-step) -> resumed,
    or, if still behind (or holding a partial update, "<version>+partial"), updated first

`decide` is pure: the wanted weights, the replicas as observed (the version and pause each one's
GetLifecycle reported), status.weights of the last pass, and the operator's own step under way or
just finished, in; the next step, status.weights, the WeightsUpdated condition and events, out.
Every replica's version is read again each pass, so an operator restarted mid-roll carries on: a
replica at V is skipped, one left paused is resumed. The step itself runs in the background
(runtime_admin_client.py), so a long pause never holds up a reconcile pass.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from shoal.operator.children import REVISION_LABEL
from shoal.operator.rollout import Event
from shoal.operator.route import grpc_target, is_serving
from shoal.operator.spec import WeightsSpec
from shoal.operator.status import Condition

UPDATE, RESUME = "update", "resume"
CONDITION = "WeightsUpdated"
PARTIAL_SUFFIX = "+partial"  # the runtime's weights_version after an update broken half way


@dataclass(frozen=True)
class Lifecycle:
    """What a runtime's GetLifecycle said."""

    version: str
    paused: bool


@dataclass(frozen=True)
class Replica:
    pod: str
    revision: str
    target: str | None  # its gRPC server (host:port); None without a pod IP
    serving: bool  # ready and not terminating
    lifecycle: Lifecycle | None = None  # None: not asked (not serving), or no answer
    error: str | None = None  # why it did not answer


@dataclass(frozen=True)
class WeightsStep:
    kind: str  # UPDATE: pause (WAIT), update, resume; RESUME: resume only
    pod: str
    target: str
    version: str | None = None
    path: str | None = None
    drain: bool = False  # out of the route while it runs: another replica of its revision serves


@dataclass(frozen=True)
class Outcome:
    ok: bool
    rejected: bool = False  # INVALID_ARGUMENT: the runtime refused the weights, its old ones serve
    message: str = ""


@dataclass(frozen=True)
class Progress:
    """The operator's own step on this pool: under way, or finished since the last pass."""

    running: WeightsStep | None = None
    finished: tuple[WeightsStep, Outcome] | None = None


@dataclass(frozen=True)
class WeightsDecision:
    step: WeightsStep | None  # to start now
    drained: str | None  # the target to leave out of the route this pass
    status: dict | None  # status.weights; None removes it
    condition: Condition
    events: tuple[Event, ...] = ()


def watched(spec: dict, status: dict) -> bool:
    """Whether a pass must ask the runtimes: weights are wanted, or were (a replica may be left paused)."""
    return bool((spec.get("model") or {}).get("weights") or status.get("weights"))


def replicas_of(pods: list[dict], revisions: set[str], lifecycles: dict[str, Lifecycle | str]) -> tuple[Replica, ...]:
    """The live revisions' pods not being deleted; `lifecycles`: pod name -> its answer, or why none."""
    replicas = []
    for pod in pods:
        metadata, ip = pod["metadata"], (pod.get("status") or {}).get("podIP")
        revision = (metadata.get("labels") or {}).get(REVISION_LABEL)
        if metadata.get("deletionTimestamp") or revision not in revisions:
            continue
        answer = lifecycles.get(metadata["name"])
        replicas.append(
            Replica(
                metadata["name"],
                revision,
                grpc_target(ip) if ip else None,
                is_serving(pod),
                answer if isinstance(answer, Lifecycle) else None,
                answer if isinstance(answer, str) else None,
            )
        )
    return tuple(sorted(replicas, key=lambda r: r.pod))


def decide(
    wanted: WeightsSpec | None, replicas: Sequence[Replica], previous: dict | None, progress: Progress
) -> WeightsDecision:
    finished = progress.finished
    events = _events(finished)
    rejected = _rejection(wanted, previous, finished)
    step, waiting = (None, "") if progress.running else _next_step(wanted, replicas, rejected is not None)
    active = progress.running or step
    drained = active.target if active is not None and active.drain else None
    failure = f"{finished[0].pod}: {finished[1].message}" if finished and not finished[1].ok else ""
    if wanted is None:
        condition = Condition(
            CONDITION, True, "NotRequested", "spec.model.weights is not set: replicas run the weights they started with"
        )
        partial = [r.pod for r in replicas if _partial(r)]
        if partial:  # resumed, they would answer from a mix of two checkpoints
            message = f"{', '.join(partial)} hold a partial update and stay paused: name the weights again"
            condition = Condition(CONDITION, False, "PartialUpdate", message)
        left = active is not None or any(r.lifecycle and r.lifecycle.paused for r in replicas)
        status = _status(None, replicas, active, None) if left else None
        return WeightsDecision(step, drained, status, condition, events)
    condition = _condition(wanted, replicas, rejected, active, failure, waiting)
    return WeightsDecision(step, drained, _status(wanted, replicas, active, rejected), condition, events)


def _next_step(
    wanted: WeightsSpec | None, replicas: Sequence[Replica], rejected: bool
) -> tuple[WeightsStep | None, str]:
    """The step to start, or none and why the next replica waits."""
    known = [r for r in replicas if r.lifecycle is not None and r.target]
    behind = [] if wanted is None or rejected else [r for r in known if r.lifecycle.version != wanted.version]
    for replica in known:
        if replica.lifecycle.paused and replica not in behind and not _partial(replica):
            return WeightsStep(RESUME, replica.pod, replica.target), ""
    # One left paused is not serving anyway: it goes first, whatever the others do.
    for replica in sorted(behind, key=lambda r: not r.lifecycle.paused):
        others = [o for o in replicas if o.revision == replica.revision and o.pod != replica.pod]
        serving = any(o.serving and not (o.lifecycle and o.lifecycle.paused) for o in others)
        if others and not serving and not replica.lifecycle.paused:
            return None, f"{replica.pod} waits until another replica of {replica.revision} serves"
        step = WeightsStep(UPDATE, replica.pod, replica.target, wanted.version, wanted.path, drain=serving)
        return step, ""
    return None, ""


def _rejection(wanted: WeightsSpec | None, previous: dict | None, finished: tuple | None) -> dict | None:
    """The refusal of exactly these weights (version and path), this pass's or one kept in status."""
    if wanted is None:
        return None
    if finished is not None and finished[1].rejected:
        step, outcome = finished
        if (step.version, step.path) == (wanted.version, wanted.path):
            return {"version": step.version, "path": step.path, "pod": step.pod, "message": outcome.message}
    kept = (previous or {}).get("rejected")
    if kept and (kept.get("version"), kept.get("path")) == (wanted.version, wanted.path):
        return kept
    return None


def _condition(
    wanted: WeightsSpec,
    replicas: Sequence[Replica],
    rejected: dict | None,
    active: WeightsStep | None,
    failure: str,
    waiting: str,
) -> Condition:
    updated = [r for r in replicas if _runs(r, wanted.version)]
    counts = f"{len(updated)}/{len(replicas)} replicas run weights {wanted.version}"
    if rejected is not None:
        return Condition(
            CONDITION,
            False,
            "UpdateRejected",
            f"{rejected.get('pod')} refused weights {wanted.version} at {wanted.path}: {rejected.get('message')}; "
            "the replicas keep the weights they run, and these are not tried again until spec.model.weights changes",
        )
    if failure:
        return Condition(CONDITION, False, "UpdateFailed", f"{counts}; {failure} (tried again)")
    if active is not None:
        doing = "updating" if active.kind == UPDATE else "resuming"
        return Condition(CONDITION, False, "Updating", f"{counts}; {doing} {active.pod}")
    if waiting:
        return Condition(CONDITION, False, "WaitingForReplicas", f"{counts}; {waiting}")
    if len(updated) == len(replicas):
        return Condition(CONDITION, True, "Updated", counts)
    silent = [f"{r.pod} ({r.error})" if r.error else r.pod for r in replicas if r.lifecycle is None]
    return Condition(CONDITION, False, "WaitingForReplicas", f"{counts}; waiting for {', '.join(silent)} to answer")


def _status(
    wanted: WeightsSpec | None, replicas: Sequence[Replica], active: WeightsStep | None, rejected: dict | None
) -> dict:
    """Every key, None where absent (a merge patch then removes it)."""
    return {
        "version": wanted.version if wanted else None,
        "path": wanted.path if wanted else None,
        "updated": sum(1 for r in replicas if _runs(r, wanted.version)) if wanted else None,
        "replicas": [_replica_status(r) for r in replicas],
        "updating": active.pod if active is not None else None,
        "rejected": rejected,
    }


def _replica_status(replica: Replica) -> dict:
    status = {"pod": replica.pod}
    if replica.lifecycle is not None:
        status["version"] = replica.lifecycle.version
        if replica.lifecycle.paused:
            status["paused"] = True
    return status


def _partial(replica: Replica) -> bool:
    """An update broken after its first tensor: the runtime stays paused, its version says so."""
    return replica.lifecycle is not None and replica.lifecycle.version.endswith(PARTIAL_SUFFIX)


def _runs(replica: Replica, version: str) -> bool:
    return replica.lifecycle is not None and replica.lifecycle.version == version and not replica.lifecycle.paused


def _events(finished: tuple[WeightsStep, Outcome] | None) -> tuple[Event, ...]:
    if finished is None:
        return ()
    step, outcome = finished
    if outcome.ok:
        if step.kind == RESUME:
            return (Event("Normal", "ReplicaResumed", f"{step.pod} was found paused and is resumed"),)
        return (Event("Normal", "WeightsUpdated", f"{step.pod} runs weights {step.version}"),)
    if outcome.rejected:
        return (
            Event(
                "Warning",
                "WeightsRejected",
                f"{step.pod} refused weights {step.version} at {step.path}: {outcome.message}; "
                "it serves its old weights",
            ),
        )
    return (Event("Warning", "WeightsUpdateFailed", f"{step.kind} of {step.pod}: {outcome.message}"),)
