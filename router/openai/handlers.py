"""POST /v1/chat/completions, POST /v1/completions, GET /v1/models[/{model}], and POST /v1/responses
(answered by responses_api/).

Every generating request goes through admission.py first. Nothing is sent before the runtime's
first message, so refusals are all plain JSON errors; after it, a streamed response reports a
failure as an SSE `error` event.
"""

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from shoal.router.dispatch import Dispatcher, Generation
from shoal.router.errors import NotFound, RouterError
from shoal.router.identity import Authenticator
from shoal.router.openai import responses
from shoal.router.openai.admission import Admission
from shoal.router.openai.best_of import best_choices
from shoal.router.openai.parsing import ParsedRequest, parse_chat, parse_completion
from shoal.router.openai.responses import ChunkChoice
from shoal.router.openai.responses_api.handler import create_response
from shoal.router.openai.sse import SseStream
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
)


class OpenAIHandlers:
    def __init__(self, dispatcher: Dispatcher, auth: Authenticator, body_timeout_s: float):
        self.dispatcher = dispatcher
        self.auth = auth
        self.admission = Admission(dispatcher, auth, body_timeout_s)
        self.started = int(time.time())

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/chat/completions", self.chat_completions),
            web.post("/v1/completions", self.completions),
            web.post("/v1/responses", self.responses),
            web.get("/v1/models", self.list_models),
            web.get("/v1/models/{model:.+}", self.get_model),
        ]

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, CHAT)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, COMPLETIONS)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        return await create_response(request, self.admission)

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
        async with self.admission.admitted(request, endpoint.parse) as admitted:
            parsed, generation = admitted.parsed, admitted.generation
            meta = responses.ResponseMeta(
                endpoint.id_prefix + admitted.inference.request_id,
                parsed.model,
                generation.revision,
                admitted.service_tier,
            )
            if parsed.stream:
                return await self._stream(request, endpoint, parsed, meta, generation, admitted.headers)
            messages = [m async for m in generation.messages()]
            if parsed.best_of is None:
                return web.json_response(endpoint.full(meta, messages, parsed.logprobs), headers=admitted.headers)
            body = endpoint.full(meta, best_choices(messages, parsed.n, parsed.logprobs), parsed.logprobs)
            body["usage"] = responses.usage(generation.finals)  # every generated choice counts, as at OpenAI
            return web.json_response(body, headers=admitted.headers)

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
                if message.tool_calls:  # only a chat request with tools has them
                    delta = {"tool_calls": responses.tool_call_deltas(message.tool_calls)}
                    await sse.send(endpoint.chunk(meta, delta, usage, ChunkChoice(index)))
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
