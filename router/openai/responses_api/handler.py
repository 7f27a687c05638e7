"""POST /v1/responses: admitted as chat completions are (auth, limits, QoS, the same headers), then
answered with a `response` object, or streamed as its events (`event:` lines, no `[DONE]`).

Nothing is sent before the runtime's first message, so a refusal is a plain JSON error; after it,
a failure of the runtime is an `error` event and then `response.failed`.
"""

import contextlib

from aiohttp import web

from shoal.router.errors import RouterError
from shoal.router.openai.admission import Admission, Admitted
from shoal.router.openai.responses import ResponseMeta
from shoal.router.openai.responses_api.events import ResponseBuilder
from shoal.router.openai.responses_api.parsing import ResponsesRequest, parse_responses
from shoal.router.openai.sse import SseStream


async def create_response(request: web.Request, admission: Admission) -> web.StreamResponse:
    async with admission.admitted(request, parse_responses) as admitted:
        parsed, generation = admitted.parsed, admitted.generation
        meta = ResponseMeta(
            "resp_" + admitted.inference.request_id, parsed.model, generation.revision, admitted.service_tier
        )
        builder = ResponseBuilder(meta, parsed.echo)
        if parsed.stream:
            return await _stream(request, builder, admitted)
        async for message in generation.messages():
            builder.add(message)
        builder.finish(generation.finals[-1])
        return web.json_response(builder.response(), headers=admitted.headers)


async def _stream(
    request: web.Request, builder: ResponseBuilder, admitted: Admitted[ResponsesRequest]
) -> web.StreamResponse:
    sse = SseStream(admitted.headers)
    await sse.open(request)
    generation = admitted.generation
    try:
        for event in builder.start():
            await sse.send_event(event)
        async for message in generation.messages():
            for event in builder.add(message):
                await sse.send_event(event)
        for event in builder.finish(generation.finals[-1]):
            await sse.send_event(event)
        await sse.end()
    except RouterError as error:  # mid-stream: the status is sent already
        with contextlib.suppress(ConnectionResetError):
            for event in builder.fail(error):
                await sse.send_event(event)
    except ConnectionResetError:
        pass  # the client left; closing the generation cancels the runtime call
    return sse.response
