"""Every HTTP error as OpenAI shapes it: `{"error": {"message", "type", "param", "code"}}`.

The middleware renders RouterErrors (with their headers: Retry-After, x-ratelimit-*), aiohttp's own
HTTP errors (404 route, 405 method, 413 body too large) and anything unexpected (500, logged).
A request aiohttp cannot even parse (a header with a control character, a header line over 8 KiB)
never reaches the middleware: QuietAppRunner's servers answer it, without echoing or logging the
text, which may hold an API key.
"""

import asyncio
import json
import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from shoal.router.errors import InvalidRequest, RequestTimeout, RouterError

log = logging.getLogger(__name__)
_HTTP_TYPES = {
    400: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
}


def error_response(error: RouterError, extra_headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(error.body(), status=error.http_status, headers={**(extra_headers or {}), **error.headers})


def http_error_body(status: int, message: str, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": _HTTP_TYPES.get(status, "server_error"), "param": None, "code": code}}


@web.middleware
async def openai_errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RouterError as error:
        return error_response(error)
    except web.HTTPRequestEntityTooLarge as error:
        message = f"The request body is too large. {error.text}"
        return web.json_response(http_error_body(413, message, "request_too_large"), status=413)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        if error.status == 404:
            message = f"Invalid URL ({request.method} {request.path})"
        else:
            message = error.reason
        return web.json_response(http_error_body(error.status, message), status=error.status, headers=_allow(error))
    except Exception:
        log.exception("unexpected error handling %s %s", request.method, request.path)
        return web.json_response(
            http_error_body(500, "The server had an error while processing your request."), status=500
        )


async def read_json(request: web.Request, timeout_s: float) -> object:
    """The parsed body; 400 with OpenAI's message when it is not JSON (413 comes from aiohttp), 408
    when it does not arrive whole within timeout_s (a client trickling it would hold the connection)."""
    try:
        async with asyncio.timeout(timeout_s):
            raw = await request.read()
    except TimeoutError:
        raise RequestTimeout(f"The request's body did not arrive within {timeout_s:g}s.") from None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or an integer of over 4300 digits
        raise InvalidRequest(
            None,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
            "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
        ) from None


def _allow(error: web.HTTPException) -> dict[str, str]:
    allow = error.headers.get("Allow")
    return {"Allow": allow} if allow else {}


class QuietAppRunner(web.AppRunner):
    """web.AppRunner whose connections answer unparsable requests with a 400 that quotes nothing."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _QuietServer  # the same server; only the connection handlers it makes differ
        return server


class _QuietServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _QuietRequestHandler(self, loop=self._loop, **self._kwargs)


class _QuietRequestHandler(RequestHandler):
    __slots__ = ()

    def handle_error(
        self, request, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError) or status >= 500:
            return super().handle_error(request, status, exc, message)
        # aiohttp's message quotes the offending line (an Authorization header, say): neither sent nor logged.
        log.debug("refused an unparsable request from %s: %s", request.remote, type(exc).__name__)
        message = "The request's first line or headers are malformed or too long."
        response = web.json_response(http_error_body(status, message), status=status)
        response.force_close()
        return response
