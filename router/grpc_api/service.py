"""shoal.v1.Inference: the router's public gRPC API, the HTTP API's twin.

The API key comes in the `authorization` metadata; errors are the same RouterErrors as over HTTP,
sent as their gRPC status with the message, and for RESOURCE_EXHAUSTED the `retry-after` and
`x-ratelimit-*` values as trailers. A client that cancels its stream cancels the runtime call.
"""

import grpc

from shoal.router.dispatch import Dispatcher
from shoal.router.errors import InvalidRequest, RouterError
from shoal.router.identity import Authenticator, qos_class
from shoal.router.request import InferenceRequest, Prompt, validated
from shoal.v1 import router_pb2 as rpb
from shoal.v1 import router_pb2_grpc
from shoal.v1 import runtime_pb2 as pb

_QOS = {rpb.QOS_CLASS_REALTIME: "realtime", rpb.QOS_CLASS_BATCH: "batch"}


class InferenceService(router_pb2_grpc.InferenceServicer):
    def __init__(self, dispatcher: Dispatcher, auth: Authenticator):
        self.dispatcher = dispatcher
        self.auth = auth

    async def Generate(self, request: rpb.InferenceRequest, context: grpc.aio.ServicerContext):
        try:
            tenant = self.auth.tenant(_metadata(context).get("authorization"))
            qos = qos_class(self.auth.default_qos(tenant), _QOS.get(request.qos_class))
            try:
                prompt, sampling = _validated(request)
            except InvalidRequest as error:  # refused here, before the dispatcher (which counts its own refusals)
                self.dispatcher.metrics.refused("", qos, tenant, error.http_status)
                raise
            inference = InferenceRequest(
                model=request.model,
                prompt=prompt,
                sampling=sampling,
                tenant=tenant,
                qos=qos,
                session_key=request.session_id or None,
                n=request.n or 1,
            )
            generation = await self.dispatcher.start(inference)
            await context.send_initial_metadata((("x-shoal-revision", generation.revision),))
            try:
                async for message in generation.messages():
                    yield rpb.InferenceResponse(
                        id=inference.request_id,
                        model=request.model,
                        text=message.text,
                        token_ids=message.token_ids,
                        logprobs=message.logprobs,
                        finish_reason=message.finish_reason,
                        stop_reason=message.stop_reason,
                        usage=message.usage if message.HasField("usage") else None,
                        index=message.index,
                        tool_calls=message.tool_calls,
                    )
            finally:
                await generation.close()
        except RouterError as error:
            trailers = tuple((k.lower(), v) for k, v in error.headers.items())
            await context.abort(error.grpc_code, error.message, trailing_metadata=trailers)

    async def ListModels(
        self, request: rpb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> rpb.ListModelsResponse:
        try:
            self.auth.tenant(_metadata(context).get("authorization"))
        except RouterError as error:
            await context.abort(error.grpc_code, error.message)
        return rpb.ListModelsResponse(models=self.dispatcher.models())


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {k.lower(): v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


def _validated(request: rpb.InferenceRequest) -> tuple[Prompt, pb.SamplingParams]:
    """The same checks as the HTTP API's (request.validated), errors named by this API's fields."""
    sampling = {f.name: list(v) if f.is_repeated else v for f, v in request.sampling.ListFields()}
    prompt_field = {"text": "text", "token_ids": "token_ids.ids"}.get(request.WhichOneof("prompt"), "")

    def name(field: str) -> str:
        if field.split(".")[0] in sampling:  # structured.json_schema too
            return f"sampling.{field}"
        if field == "prompt":
            return prompt_field
        return f"chat.{field}"  # messages, messages[i].role, ...

    if request.n < 0:
        raise InvalidRequest("n", f"n: must be >= 1 (0 means 1), got {request.n}")
    try:
        return validated(_prompt(request), sampling, name)
    except InvalidRequest as error:  # router.proto: the message starts with the field, as the runtime's do
        raise InvalidRequest(error.param, f"{error.param}: {error.message}") from None


def _prompt(request: rpb.InferenceRequest) -> Prompt:
    kind = request.WhichOneof("prompt")
    if kind == "text":
        return Prompt(text=request.text)
    if kind == "token_ids":
        return Prompt(token_ids=tuple(request.token_ids.ids))
    if kind == "chat":
        return Prompt(chat=request.chat)
    raise InvalidRequest("prompt", "one of text, token_ids or chat is required")
