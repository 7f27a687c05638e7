"""POST /v1/chat/completions, POST /v1/completions, GET /v1/models[/{model}].

A request: API key -> tenant (401), JSON body (400/413), parameters (400), QoS class, then the
dispatcher (404 unknown model, 429 limits or overload, 503 no backend, 400/500 from the runtime).
Nothing is sent before the runtime's first message, so those are all plain JSON errors; after it,
a streamed response reports a failure as an SSE `error` event. Every response carries the
tenant's x-ratelimit-* headers, x-request-id and x-shoal-revision (which revision served it).
"""

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from shoal.router.dispatch import Dispatcher, Generation
from shoal.router.errors import NotFound, RouterError
from shoal.router.identity import QOS_HEADER, SESSION_HEADER, Authenticator, qos_class
from shoal.router.openai import responses
from shoal.router.openai.errors import read_json
from shoal.router.openai.parsing import ParsedRequest, parse_chat, parse_completion
from shoal.router.openai.responses import ChunkChoice
from shoal.router.openai.sse import SseStream
from shoal.router.request import InferenceRequest
from shoal.v1 import runtime_pb2 as pb


@dataclass(frozen=True)
class _Endpoint:
    """How one endpoint parses requests and shapes answers."""

    parse: Callable[[object], ParsedRequest]
    id_prefix: str
    chunk_object: str
    full: Callable  # (meta, messages, logprobs) -> dict
    first_delta: dict | None  # chat opens the stream with the assistant role
    chunk: Callable  # (meta, text, include_usage, ChunkChoice) -> dict
    chunk_text: Callable[[str], object]
    finish_delta: object  # what the chunk that carries finish_reason holds
    logprobs: Callable  # (messages, text_offset) -> dict
    prompt_param: str  # what the runtime's `prompt` field is called here


CHAT = _Endpoint(
    parse_chat,
    "chatcmpl-",
    "chat.completion.chunk",
    responses.chat_completion,
    {"role": "assistant", "content": ""},
    responses.chat_chunk,
    lambda text: {"content": text},
    {},
    lambda messages, offset: responses.chat_logprobs(messages),
    "messages",
)
COMPLETIONS = _Endpoint(
    parse_completion,
    "cmpl-",
    "text_completion",
    responses.text_completion,
    None,
    responses.completion_chunk,
    lambda text: text,
    "",
    responses.completion_logprobs,
    "prompt",
)


class OpenAIHandlers:
    def __init__(self, dispatcher: Dispatcher, auth: Authenticator, body_timeout_s: float):
        self.dispatcher = dispatcher
        self.auth = auth
        self.body_timeout_s = body_timeout_s
        self.started = int(time.time())

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/chat/completions", self.chat_completions),
            web.post("/v1/completions", self.completions),
            web.get("/v1/models", self.list_models),
            web.get("/v1/models/{model:.+}", self.get_model),
        ]

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, CHAT)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, COMPLETIONS)

    async def list_models(self, request: web.Request) -> web.Response:
        self.auth.tenant(request.headers.get("Authorization"))
        data = [responses.model_object(m, self.started) for m in self.dispatcher.models()]
        return web.json_response({"object": "list", "data": data})

    async def get_model(self, request: web.Request) -> web.Response:
        self.auth.tenant(request.headers.get("Authorization"))
        model = request.match_info["model"]
        if model not in self.dispatcher.models():
            raise NotFound(f"The model '{model}' does not exist", param="model")
        return web.json_response(responses.model_object(model, self.started))

    async def _generate(self, request: web.Request, endpoint: _Endpoint) -> web.StreamResponse:
        tenant = self.auth.tenant(request.headers.get("Authorization"))
        parsed = inference = None
        limit_headers = lambda: self.dispatcher.limit_headers(tenant, parsed.model if parsed else None)  # noqa: E731
        try:
            parsed = endpoint.parse(await read_json(request, self.body_timeout_s))
            qos = qos_class(
                self.auth.default_qos(tenant), request.headers.get(QOS_HEADER), parsed.service_tier, parsed.priority
            )
            inference = InferenceRequest(
                model=parsed.model,
                prompt=parsed.prompt,
                sampling=parsed.sampling,
                tenant=tenant,
                qos=qos,
                session_key=request.headers.get(SESSION_HEADER) or parsed.user,
                n=parsed.n,
            )
            generation = await self.dispatcher.start(inference)
        except RouterError as error:
            if inference is None:  # refused here, before the dispatcher (which counts its own refusals)
                self.dispatcher.metrics.refused("", self.auth.default_qos(tenant), tenant, error.http_status)
            if error.param == "prompt":
                error.param = endpoint.prompt_param
            error.headers = {**limit_headers(), **error.headers}
            raise
        try:
            meta = responses.ResponseMeta(
                endpoint.id_prefix + inference.request_id,
                parsed.model,
                generation.revision,
                "flex" if qos == "batch" else "default",
            )
            headers = {**limit_headers(), "x-request-id": inference.request_id, "x-shoal-revision": generation.revision}
            if parsed.stream:
                return await self._stream(request, endpoint, parsed, meta, generation, headers)
            messages = [m async for m in generation.messages()]
            return web.json_response(endpoint.full(meta, messages, parsed.logprobs), headers=headers)
        finally:
            await generation.close()

    async def _stream(
        self,
        request: web.Request,
        endpoint: _Endpoint,
        parsed: ParsedRequest,
        meta,
        generation: Generation,
        headers: dict,
    ) -> web.StreamResponse:
        sse = SseStream(headers)
        await sse.open(request)
        usage = parsed.include_usage
        if endpoint.first_delta is not None:
            for index in range(parsed.n):
                await sse.send(endpoint.chunk(meta, endpoint.first_delta, usage, ChunkChoice(index)))
        text_offsets = [0] * parsed.n  # per choice, for completions' logprobs
        try:
            async for message in generation.messages():
                index = message.index
                logprobs = None
                if parsed.logprobs and message.logprobs:
                    logprobs = endpoint.logprobs([message], text_offsets[index])
                if message.text or logprobs is not None:
                    choice = ChunkChoice(index, logprobs=logprobs)
                    await sse.send(endpoint.chunk(meta, endpoint.chunk_text(message.text), usage, choice))
                text_offsets[index] += len(message.text)
                if message.finish_reason != pb.FINISH_REASON_UNSPECIFIED:
                    finish = ChunkChoice(index, responses.FINISH_REASONS[message.finish_reason])
                    await sse.send(endpoint.chunk(meta, endpoint.finish_delta, usage, finish))
            if usage:
                await sse.send(responses.usage_chunk(meta, endpoint.chunk_object, generation.finals))
            await sse.done()
        except RouterError as error:  # mid-stream: the status is sent already
            with contextlib.suppress(ConnectionResetError):
                await sse.send(error.body())
        except ConnectionResetError:
            pass  # the client left; closing the generation cancels the runtime call
        return sse.response
