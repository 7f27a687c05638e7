"""The operator's RuntimeAdmin client against a stand-in runtime (a gRPC servicer in the test's
loop): the token sent, the step's calls in order, and what a failure leaves behind."""

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from shoal.operator.runtime_admin_client import RuntimeAdminClient, WeightSteps
from shoal.operator.weights_rollout import RESUME, UPDATE, Lifecycle, Outcome, Progress, WeightsStep
from shoal.v1 import runtime_admin_pb2 as apb
from shoal.v1 import runtime_admin_pb2_grpc

pytestmark = pytest.mark.asyncio
TOKEN = "t0ken"


class StandIn(runtime_admin_pb2_grpc.RuntimeAdminServicer):
    """Records the calls; UpdateWeights fails with `update_error` when set."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.version, self.mode = "initial", apb.PAUSE_MODE_UNSPECIFIED
        self.update_error: grpc.StatusCode | None = None

    async def _check(self, context, call: str) -> None:
        if dict(context.invocation_metadata()).get("authorization") != f"Bearer {TOKEN}":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "token")
        self.calls.append(call)

    def _state(self) -> apb.LifecycleState:
        return apb.LifecycleState(pause_mode=self.mode, weights_version=self.version)

    async def Pause(self, request, context):
        await self._check(context, f"Pause({apb.PauseMode.Name(request.mode)})")
        self.mode = request.mode
        return self._state()

    async def Resume(self, request, context):
        await self._check(context, "Resume")
        self.mode = apb.PAUSE_MODE_UNSPECIFIED
        return self._state()

    async def UpdateWeights(self, request, context):
        await self._check(context, f"UpdateWeights({request.path}, {request.version})")
        if self.update_error is not None:
            if self.update_error == grpc.StatusCode.ABORTED:
                self.version = f"{request.version}+partial"
            await context.abort(self.update_error, "refused by the stand-in")
        self.version = request.version
        return self._state()

    async def GetLifecycle(self, request, context):
        await self._check(context, "GetLifecycle")
        return self._state()


@pytest_asyncio.fixture
async def runtime() -> AsyncIterator[tuple[StandIn, str]]:
    server, servicer = grpc.aio.server(), StandIn()
    runtime_admin_pb2_grpc.add_RuntimeAdminServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


def update(target: str) -> WeightsStep:
    return WeightsStep(UPDATE, "p1", target, "v2", "/models/v2", drain=True)


async def test_an_update_pauses_updates_and_resumes(runtime):
    servicer, target = runtime
    assert await RuntimeAdminClient().run(update(target), TOKEN) == Outcome(True)
    assert servicer.calls == ["Pause(PAUSE_MODE_WAIT)", "UpdateWeights(/models/v2, v2)", "Resume"]
    lifecycles = await RuntimeAdminClient().lifecycles({"p1": target, "gone": "127.0.0.1:1"}, TOKEN)
    assert lifecycles["p1"] == Lifecycle("v2", False) and lifecycles["gone"].startswith("UNAVAILABLE")


async def test_refused_weights_are_resumed_on_the_old_ones(runtime):
    servicer, target = runtime
    servicer.update_error = grpc.StatusCode.INVALID_ARGUMENT
    outcome = await RuntimeAdminClient().run(update(target), TOKEN)
    assert outcome == Outcome(False, rejected=True, message="INVALID_ARGUMENT: refused by the stand-in")
    assert servicer.calls[-1] == "Resume" and (servicer.version, servicer.mode) == ("initial", 0)


async def test_a_partial_update_stays_paused(runtime):
    servicer, target = runtime
    servicer.update_error = grpc.StatusCode.ABORTED
    outcome = await RuntimeAdminClient().run(update(target), TOKEN)
    assert not outcome.ok and not outcome.rejected and "left paused" in outcome.message
    assert "Resume" not in servicer.calls and servicer.mode == apb.PAUSE_MODE_WAIT
    assert servicer.version == "v2+partial"


async def test_a_wrong_token_changes_nothing(runtime):
    servicer, target = runtime
    outcome = await RuntimeAdminClient().run(WeightsStep(RESUME, "p1", target), "wrong")
    assert not outcome.ok and "UNAUTHENTICATED" in outcome.message and servicer.calls == []


async def test_steps_run_in_the_background_one_per_pool(runtime):
    servicer, target = runtime
    steps, step = WeightSteps(), update(target)
    assert steps.progress("ns.pool") == Progress()
    steps.start("ns.pool", step, RuntimeAdminClient().run(step, TOKEN))
    assert steps.progress("ns.pool") == Progress(running=step)
    with pytest.raises(RuntimeError, match="already under way"):
        steps.start("ns.pool", step, None)
    while steps.progress("ns.pool").running:
        await asyncio.sleep(0.01)
    assert steps.progress("ns.pool") == Progress(finished=(step, Outcome(True)))
    steps.settled("ns.pool")
    assert steps.progress("ns.pool") == Progress()
