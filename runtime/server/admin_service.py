"""The shoal.v1.RuntimeAdmin gRPC service: pause and resume, weight updates in place, prefix-cache
reset (proto/shoal/v1/runtime_admin.proto).

Every call needs the token of --admin-token-file as `authorization: Bearer <token>`; without that
flag the service refuses every call (PERMISSION_DENIED): weights are not for anyone on the network
to change. Errors: INVALID_ARGUMENT (a bad update, named; the old weights keep serving),
FAILED_PRECONDITION (an update while not paused), UNIMPLEMENTED (an update under tensor parallelism),
UNAUTHENTICATED.
"""

import asyncio
import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc

from shoal.runtime.engine.async_engine import AsyncEngine
from shoal.runtime.engine.lifecycle import PauseMode
from shoal.runtime.engine.llm_engine import LLMEngine
from shoal.runtime.errors import InvalidRequestError, NotPausedError, NotSupportedError, PartialUpdateError
from shoal.runtime.server.weight_sources import (
    ChunkFeed,
    Update,
    WeightGroup,
    checked,
    from_broadcast,
    from_bytes,
    from_path,
    manifest_specs,
)
from shoal.v1 import runtime_admin_pb2 as apb
from shoal.v1 import runtime_admin_pb2_grpc

log = logging.getLogger(__name__)
_MODES = {
    apb.PAUSE_MODE_WAIT: PauseMode.WAIT,
    apb.PAUSE_MODE_KEEP: PauseMode.KEEP,
    apb.PAUSE_MODE_ABORT: PauseMode.ABORT,
}
_PROTO_MODES = {mode: number for number, mode in _MODES.items()}


class RuntimeAdminService(runtime_admin_pb2_grpc.RuntimeAdminServicer):
    def __init__(self, engine: AsyncEngine, token: str | None, on_update=None):
        self.engine = engine
        self.token = token
        self.on_update = on_update  # told (version, seconds) after each weight update (metrics)
        self.group: WeightGroup | None = None

    async def Pause(self, request: apb.PauseRequest, context) -> apb.LifecycleState:
        await self._authorize(context)
        if request.mode not in _MODES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "mode: one of WAIT, KEEP or ABORT")
        await self.engine.pause(_MODES[request.mode])
        return self._state()

    async def Resume(self, request: apb.ResumeRequest, context) -> apb.LifecycleState:
        await self._authorize(context)
        await self.engine.resume()
        return self._state()

    async def GetLifecycle(self, request: apb.GetLifecycleRequest, context) -> apb.LifecycleState:
        await self._authorize(context)
        return self._state()

    async def ResetPrefixCache(self, request: apb.ResetPrefixCacheRequest, context) -> apb.LifecycleState:
        await self._authorize(context)
        await self._run(context, lambda: LLMEngine.reset_prefix_cache)
        return self._state()

    async def UpdateWeights(self, request: apb.UpdateWeightsRequest, context) -> apb.LifecycleState:
        await self._authorize(context)
        update = await self._update(context, request.version, request.keep_prefix_cache)
        await self._run(context, lambda: from_path(request.path, update), update.version)
        return self._state()

    async def StreamWeights(self, request_iterator, context) -> apb.LifecycleState:
        await self._authorize(context)
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("part") != "manifest":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "manifest: the first message must be the manifest")
        manifest = first.manifest
        update = await self._update(context, manifest.version, manifest.keep_prefix_cache)
        specs = await self._checked(context, lambda: manifest_specs(manifest))
        await self._run(context, lambda: checked(specs, "manifest"))
        feed = ChunkFeed()
        copying = asyncio.create_task(self._run(context, lambda: from_bytes(specs, feed, update), update.version))
        try:
            async for chunk in request_iterator:
                if copying.done():  # it failed: the rest is not wanted
                    break
                if chunk.WhichOneof("part") != "data":
                    feed.end(InvalidRequestError("manifest", "only one manifest, first"))
                    break
                feed.put(chunk.data)
            else:
                feed.end()
        except BaseException as error:  # the client went away mid-stream
            feed.end(InvalidRequestError("data", f"the stream broke: {error!r}"))
            raise
        await copying
        return self._state()

    async def InitWeightGroup(self, request: apb.InitWeightGroupRequest, context) -> apb.LifecycleState:
        await self._authorize(context)
        device = self.engine.engine.runner.device
        try:
            self.group = await asyncio.to_thread(WeightGroup, request, device)
        except InvalidRequestError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except Exception as error:  # torch.distributed could not form the group (unreachable, timeout)
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"the weight group did not form: {error}")
        return self._state()

    async def ReceiveWeights(self, request: apb.ReceiveWeightsRequest, context) -> apb.LifecycleState:
        await self._authorize(context)
        if self.group is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "call InitWeightGroup first")
        manifest = request.manifest
        update = await self._update(context, manifest.version, manifest.keep_prefix_cache)
        specs = await self._checked(context, lambda: manifest_specs(manifest))
        await self._run(context, lambda: from_broadcast(specs, self.group, update), update.version)
        return self._state()

    async def _update(self, context, version: str, keep_prefix_cache: bool) -> Update:
        if not version:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "version: required (the new weights_version)")
        return Update(version, reset_prefix_cache=not keep_prefix_cache)

    async def _checked(self, context, check: Callable[[], Any]) -> Any:
        """check()'s result, or INVALID_ARGUMENT naming what it refused."""
        try:
            return check()
        except InvalidRequestError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))

    async def _run(self, context, build: Callable[[], Callable[[LLMEngine], Any]], version: str | None = None) -> Any:
        """Builds the work (which may refuse the request) and runs it on the paused engine's thread;
        errors become the caller's status codes. Work that changes the weights names their version."""
        started = time.perf_counter()
        try:
            result = await self.engine.run_paused(build(), version)
        except InvalidRequestError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except NotPausedError as error:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
        except PartialUpdateError as error:
            await context.abort(grpc.StatusCode.ABORTED, str(error))
        except NotSupportedError as error:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, str(error))
        if version is not None:
            seconds = time.perf_counter() - started
            log.info("weights updated to %r in %.2fs", version, seconds)
            if self.on_update is not None:
                self.on_update(version, seconds)
        return result

    async def _authorize(self, context) -> None:
        if self.token is None:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, "the admin service is off: start the runtime with --admin-token-file"
            )
        given = dict(context.invocation_metadata() or ()).get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid `authorization: Bearer <token>` is required")

    def _state(self) -> apb.LifecycleState:
        stats = self.engine.stats()
        return apb.LifecycleState(
            pause_mode=_PROTO_MODES.get(self.engine.admission.mode, apb.PAUSE_MODE_UNSPECIFIED),
            weights_version=self.engine.weights_version,
            num_requests_frozen=self.engine.num_frozen,
            num_requests_running=stats.num_running,
            num_requests_waiting=self.engine.num_waiting(),
            weight_updates=self.engine.weight_updates,
        )
