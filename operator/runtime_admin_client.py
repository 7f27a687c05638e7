"""The operator's side of the runtimes' RuntimeAdmin service (proto/shoal/v1/runtime_admin.proto):
each runtime pod reached at its IP on the runtime's gRPC port, with the pool's admin token (the
Secret children.admin_secret_name names, mounted into the pods as --admin-token-file).

`RuntimeAdminClient` asks the runtimes where they stand (GetLifecycle) and runs one step of
weights_rollout.py against one replica; `WeightSteps` runs those steps in the background, one per
pool at a time, so that a pause waiting for long answers to finish never holds up a reconcile pass.
"""

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass

import grpc

from shoal.operator.weights_rollout import RESUME, Lifecycle, Outcome, Progress, WeightsStep
from shoal.v1 import runtime_admin_pb2 as apb
from shoal.v1 import runtime_admin_pb2_grpc

log = logging.getLogger(__name__)
ASK_TIMEOUT_S = 3.0  # GetLifecycle and Resume answer at once
PAUSE_TIMEOUT_S = 600.0  # a WAIT pause returns once the requests the replica runs have finished
UPDATE_TIMEOUT_S = 600.0  # every tensor read from the replica's disk and written in place


class RuntimeAdminClient:
    async def lifecycles(self, targets: dict[str, str], token: str) -> dict[str, Lifecycle | str]:
        """pod -> its GetLifecycle, or why it gave none; `targets`: pod -> host:port."""
        pods = list(targets)
        answers = await asyncio.gather(*(self._lifecycle(targets[pod], token) for pod in pods))
        return dict(zip(pods, answers, strict=True))

    async def run(self, step: WeightsStep, token: str) -> Outcome:
        """UPDATE: pause (WAIT), update, resume. RESUME: resume. Errors are the outcome, not raised.

        A failed update is resumed on its old weights only when none were written: the pause
        failed, or the runtime refused the update before writing (INVALID_ARGUMENT,
        FAILED_PRECONDITION). Otherwise (ABORTED: "<version>+partial"; or no answer) the replica
        stays paused, and the next pass finds it paused and behind and updates it again."""
        metadata = _metadata(token)
        async with grpc.aio.insecure_channel(step.target) as channel:
            stub = runtime_admin_pb2_grpc.RuntimeAdminStub(channel)
            if step.kind == RESUME:
                return await _resume(stub, metadata)
            paused = False
            try:
                pause = apb.PauseRequest(mode=apb.PAUSE_MODE_WAIT)
                await stub.Pause(pause, metadata=metadata, timeout=PAUSE_TIMEOUT_S)
                paused = True
                update = apb.UpdateWeightsRequest(path=step.path, version=step.version)
                await stub.UpdateWeights(update, metadata=metadata, timeout=UPDATE_TIMEOUT_S)
            except grpc.aio.AioRpcError as error:
                refused = error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION)
                if paused and not refused:  # some new weights may be in place
                    return Outcome(False, message=f"{_describe(error)}; left paused, to be updated again")
                resumed = await _resume(stub, metadata)
                message = _describe(error) + ("" if resumed.ok else f"; then {resumed.message}")
                return Outcome(False, rejected=error.code() == grpc.StatusCode.INVALID_ARGUMENT, message=message)
            except asyncio.CancelledError:  # the pool deleted, the operator stopping
                if not paused:
                    await asyncio.shield(_resume(stub, metadata))
                raise
            return await _resume(stub, metadata)

    async def _lifecycle(self, target: str, token: str) -> Lifecycle | str:
        try:
            async with grpc.aio.insecure_channel(target) as channel:
                state = await runtime_admin_pb2_grpc.RuntimeAdminStub(channel).GetLifecycle(
                    apb.GetLifecycleRequest(), metadata=_metadata(token), timeout=ASK_TIMEOUT_S
                )
        except grpc.aio.AioRpcError as error:
            return _describe(error)
        return Lifecycle(state.weights_version, state.pause_mode != apb.PAUSE_MODE_UNSPECIFIED)


async def _resume(stub: runtime_admin_pb2_grpc.RuntimeAdminStub, metadata: tuple) -> Outcome:
    try:
        await stub.Resume(apb.ResumeRequest(), metadata=metadata, timeout=ASK_TIMEOUT_S)
    except grpc.aio.AioRpcError as error:
        return Outcome(False, message=f"resume failed: {_describe(error)}")
    return Outcome(True)


def _metadata(token: str) -> tuple:
    return (("authorization", f"Bearer {token}"),)


def _describe(error: grpc.aio.AioRpcError) -> str:
    return f"{error.code().name}: {error.details()}"


@dataclass
class _Running:
    step: WeightsStep
    task: asyncio.Task


class WeightSteps:
    """At most one weights step per pool, run in the background; each pass reads its progress."""

    def __init__(self) -> None:
        self._running: dict[str, _Running] = {}

    def progress(self, pool: str) -> Progress:
        running = self._running.get(pool)
        if running is None:
            return Progress()
        if not running.task.done():
            return Progress(running=running.step)
        if running.task.cancelled():
            outcome = Outcome(False, message="cancelled")
        elif running.task.exception() is not None:
            outcome = Outcome(False, message=f"{type(running.task.exception()).__name__}: {running.task.exception()}")
        else:
            outcome = running.task.result()
        return Progress(finished=(running.step, outcome))

    def settled(self, pool: str) -> None:
        """The finished step's outcome is in status: forget it."""
        running = self._running.get(pool)
        if running is not None and running.task.done():
            del self._running[pool]

    def start(self, pool: str, step: WeightsStep, work: Awaitable[Outcome]) -> None:
        if pool in self._running:
            raise RuntimeError(f"a weights step is already under way on {pool}")
        log.info("pool %s: weights step %s on %s", pool, step.kind, step.pod)
        self._running[pool] = _Running(step, asyncio.ensure_future(work))

    async def cancel(self, pool: str | None = None) -> None:
        """One pool's step (it is being deleted), or every one (the operator stops)."""
        pools = [pool] if pool is not None else list(self._running)
        tasks = [self._running.pop(p).task for p in pools if p in self._running]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
