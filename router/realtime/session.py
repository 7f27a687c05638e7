"""GET /v1/realtime?model=M: one WebSocket session, several request/response turns.

The session keeps the conversation; each `response.create` sends it whole (as chat messages) to
the dispatcher, with the session id as the session key, so every turn lands on the same revision and
replica and reuses its prefix cache. One response runs at a time, in its own task, while the
session keeps reading client events: `response.cancel` cancels that task, which cancels the runtime
call (the runtime frees the KV blocks before its next step).

Backpressure: events go out one at a time and each send waits for the socket once more than
`send_buffer_bytes` are pending, so a client that stops reading stops the response task, which
stops reading from the runtime. Nothing piles up in the router.

Close codes: 1000 after an idle timeout or the max lifetime (each announced with an `error` event),
1001 when the router shuts down, 1009 for a message over max_message_bytes (aiohttp's), 1011 on an
internal error.
"""

import asyncio
import json
import logging
import time

from aiohttp import WSCloseCode, WSMsgType, web

from shoal.router.config import RealtimeConfig
from shoal.router.dispatch import Dispatcher
from shoal.router.errors import InvalidRequest, RouterError
from shoal.router.identity import Authenticator, qos_class
from shoal.router.realtime import events
from shoal.router.request import InferenceRequest, Prompt
from shoal.v1 import runtime_pb2 as pb

log = logging.getLogger(__name__)
CLOSE_TIMEOUT_S = 2.0  # how long a goodbye may wait on a client that does not read


class RealtimeSessions:
    """The /v1/realtime endpoint and its open sessions."""

    def __init__(self, dispatcher: Dispatcher, auth: Authenticator, config: RealtimeConfig):
        self.dispatcher = dispatcher
        self.auth = auth
        self.config = config
        self.open: set[Session] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        tenant = self.auth.tenant(request.headers.get("Authorization"))  # 401 before the upgrade
        model = request.query.get("model", "")
        pool = self.dispatcher.pool_for(model)  # 404 before the upgrade
        ws = web.WebSocketResponse(
            max_msg_size=self.config.max_message_bytes, writer_limit=self.config.send_buffer_bytes
        )
        await ws.prepare(request)
        session = Session(ws, self.dispatcher, tenant, self.auth.default_qos(tenant), pool.config.model, self.config)
        self.open.add(session)
        try:
            await session.run()
        finally:
            self.open.discard(session)
        return ws

    async def close_all(self) -> None:
        await asyncio.gather(*(s.close(WSCloseCode.GOING_AWAY, "server shutting down") for s in list(self.open)))


class Session:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        dispatcher: Dispatcher,
        tenant: str,
        default_qos: str,
        model: str,
        config: RealtimeConfig,
    ):
        self.ws = ws
        self.dispatcher = dispatcher
        self.tenant = tenant
        self.default_qos = default_qos
        self.model = model
        self.config = config
        self.id = events.new_id("sess")
        self.settings = events.SessionSettings()
        self.conversation: list[tuple[str, str]] = []
        self.response: asyncio.Task | None = None
        self._send_lock = asyncio.Lock()
        self._closing = False

    async def run(self) -> None:
        deadline = time.monotonic() + self.config.max_lifetime_s
        await self.send(events.event("session.created", session=self._public()))
        while not self.ws.closed:
            busy = self.response is not None and not self.response.done()
            idle_s = None if busy else self.config.idle_timeout_s
            left_s = deadline - time.monotonic()
            try:
                message = await self.ws.receive(timeout=min(left_s, idle_s or left_s))
            except TimeoutError:
                expired = time.monotonic() >= deadline
                code, text = (
                    ("session_expired", "the session reached its maximum lifetime")
                    if expired
                    else ("idle_timeout", "the session was idle too long")
                )
                await self._goodbye(code, text)
                await self.close(WSCloseCode.OK, code)
                break
            if message.type == WSMsgType.TEXT:
                await self._on_event(message.data)
            elif message.type == WSMsgType.BINARY:
                await self.send(
                    events.error_event("invalid_request_error", "binary_not_supported", "Send JSON text frames.")
                )
            else:  # CLOSE, CLOSING, CLOSED, ERROR (1009 for a message too large is aiohttp's)
                break
        await self._cancel_response()
        if not self.ws.closed:
            await self.close(WSCloseCode.OK, "")

    async def _on_event(self, text: str) -> None:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            await self.send(events.error_event("invalid_request_error", "invalid_json", "The event is not valid JSON."))
            return
        event_type = data.get("type") if isinstance(data, dict) else None
        event_id = data.get("event_id") if isinstance(data, dict) else None
        try:
            if event_type == "session.update":
                self.settings = events.apply_settings(self.settings, data.get("session"))
                await self.send(events.event("session.updated", session=self._public()))
            elif event_type == "conversation.item.create":
                role, content = events.parse_item(data.get("item"))
                if sum(len(c) for _, c in self.conversation) + len(content) > self.config.max_conversation_chars:
                    raise InvalidRequest(
                        "item",
                        "The conversation is too long for this session; start a new one.",
                        "conversation_too_long",
                    )
                self.conversation.append((role, content))
                item_id = events.new_id("item")
                await self.send(
                    events.event("conversation.item.created", item=events.item_object(item_id, role, content))
                )
            elif event_type == "response.create":
                await self._start_response(data.get("response"))
            elif event_type == "response.cancel":
                await self._cancel_response()
            else:
                raise InvalidRequest(
                    "type", f"Unknown event type {event_type!r}; expected one of {', '.join(events.CLIENT_EVENTS)}."
                )
        except RouterError as error:
            await self.send(events.error_event(error.error_type, error.code, error.message, error.param, event_id))

    async def _start_response(self, overrides) -> None:
        if self.response is not None and not self.response.done():
            raise InvalidRequest(
                None,
                "A response is already in progress; cancel it or wait for response.done.",
                "conversation_already_has_active_response",
            )
        settings = events.apply_settings(self.settings, overrides)
        if not any(role == "user" for role, _ in self.conversation):
            raise InvalidRequest(None, "The conversation has no user message yet.", "empty_conversation")
        messages = ([("system", settings.instructions)] if settings.instructions else []) + self.conversation
        sampling = pb.SamplingParams()
        if settings.temperature is not None:
            sampling.temperature = settings.temperature
        if settings.max_output_tokens is not None:
            sampling.max_tokens = settings.max_output_tokens
        request = InferenceRequest(
            model=self.model,
            prompt=Prompt(messages=tuple(messages)),
            sampling=sampling,
            tenant=self.tenant,
            qos=qos_class(self.default_qos, settings.qos),
            session_key=self.id,
        )
        response_id = events.new_id("resp")
        await self.send(events.event("response.created", response=events.response_object(response_id, "in_progress")))
        self.response = asyncio.create_task(self._respond(response_id, request))

    async def _respond(self, response_id: str, request: InferenceRequest) -> None:
        item_id = events.new_id("item")
        parts: list[str] = []
        status, usage, details = "failed", None, None
        try:
            generation = await self.dispatcher.start(request)
            try:
                async for message in generation.messages():
                    if message.text:
                        parts.append(message.text)
                        await self.send(
                            events.event(
                                "response.text.delta", response_id=response_id, item_id=item_id, delta=message.text
                            )
                        )
                    if message.finish_reason != pb.FINISH_REASON_UNSPECIFIED:
                        status = "completed" if message.finish_reason == pb.FINISH_REASON_STOP else "incomplete"
                        u = message.usage
                        usage = {
                            "input_tokens": u.prompt_tokens,
                            "output_tokens": u.completion_tokens,
                            "total_tokens": u.prompt_tokens + u.completion_tokens,
                            "input_token_details": {"cached_tokens": u.cached_prompt_tokens},
                        }
                        if status == "incomplete":
                            details = {"type": "incomplete", "reason": "max_output_tokens"}
            finally:
                await generation.close()  # cancels the runtime call if we leave early
        except RouterError as error:
            details = {
                "type": "failed",
                "error": {"type": error.error_type, "code": error.code, "message": error.message},
            }
            await self.send(events.error_event(error.error_type, error.code, error.message, error.param))
        except asyncio.CancelledError:
            status, details = "cancelled", {"type": "cancelled", "reason": "client_cancelled"}
        finally:
            text = "".join(parts)
            if text:
                self.conversation.append(("assistant", text))
        if self._closing:
            return
        output = [events.item_object(item_id, "assistant", text, status)] if text else []
        if text:
            await self.send(events.event("response.text.done", response_id=response_id, item_id=item_id, text=text))
        await self.send(
            events.event("response.done", response=events.response_object(response_id, status, usage, details, output))
        )

    async def _cancel_response(self) -> None:
        """Cancels the response in progress; its task then reports response.done (cancelled)."""
        task = self.response
        if task is None or task.done():
            return
        task.cancel()
        await asyncio.wait({task}, timeout=CLOSE_TIMEOUT_S)
        if not task.done():  # stuck telling a client that does not read: stop it for good
            task.cancel()
            await asyncio.wait({task})

    async def send(self, event: dict) -> None:
        """Waits while the client is behind (backpressure); drops the event if the socket is gone."""
        async with self._send_lock:
            if self.ws.closed:
                return
            try:
                await self.ws.send_str(json.dumps(event, separators=(",", ":")))
            except ConnectionResetError:
                pass

    async def _goodbye(self, code: str, message: str) -> None:
        try:
            await asyncio.wait_for(self.send(events.error_event("session_error", code, message)), CLOSE_TIMEOUT_S)
        except (TimeoutError, ConnectionResetError):
            pass

    async def close(self, code: int, message: str) -> None:
        self._closing = True
        await self._cancel_response()
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=message.encode()), CLOSE_TIMEOUT_S)
        except (TimeoutError, ConnectionResetError):
            pass

    def _public(self) -> dict:
        return {"id": self.id, "object": "realtime.session", "model": self.model, **self.settings.public()}
