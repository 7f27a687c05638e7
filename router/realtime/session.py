"""GET /v1/realtime?model=M: one WebSocket session, several request/response turns.

The session keeps the conversation; each `response.create` sends it whole (as chat messages) to
the dispatcher, with the session id as the session key, so every turn lands on the same revision and
replica and reuses its prefix cache. One response runs at a time (response.py), while the session
keeps reading client events: `response.cancel` cancels it, which cancels the runtime call (the
runtime frees the KV blocks before its next step). Every response.created ends with one
response.done, unless the client is gone.

However the session ends (the client's close frame, a reset, a dead or deaf client (peer.py), the
idle timeout, the max lifetime, a router shutdown, a bug), the response in flight is cancelled, so
the runtime call, the pool slot and the tenant's lease are given back at once.

Backpressure: events go out one at a time and each send waits for the socket once more than
`send_buffer_bytes` are pending, so a client that reads slowly slows its response, which stops
reading from the runtime; nothing piles up in the router. One that stops reading for
`send_timeout_s` is taken for gone.

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
from shoal.router.errors import InvalidRequest, ModelNotFound, RouterError
from shoal.router.identity import Authenticator, qos_class
from shoal.router.realtime import events, items
from shoal.router.realtime.peer import CLOSE_TIMEOUT_S, Peer, PeerGone
from shoal.router.realtime.response import Response
from shoal.router.request import InferenceRequest, Prompt
from shoal.v1 import runtime_pb2 as pb

log = logging.getLogger(__name__)


class RealtimeSessions:
    """The /v1/realtime endpoint and its open sessions."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        auth: Authenticator,
        config: RealtimeConfig,
    ):
        self.dispatcher = dispatcher
        self.auth = auth
        self.config = config
        self.open: set[Session] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        tenant = self.auth.tenant(request.headers.get("Authorization"))  # 401 before the upgrade
        model = request.query.get("model", "")
        if model not in self.dispatcher.models():  # 404 before the upgrade; each response picks its pool
            raise ModelNotFound(model)
        ws = web.WebSocketResponse(
            max_msg_size=self.config.max_message_bytes,
            writer_limit=self.config.send_buffer_bytes,
            heartbeat=self.config.heartbeat_s,
            timeout=CLOSE_TIMEOUT_S,  # for the client's answer to a close frame
        )
        await ws.prepare(request)
        peer = Peer(ws, request.transport, self.config.send_timeout_s)
        session = Session(peer, self.dispatcher, tenant, self.auth.default_qos(tenant), model, self.config)
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
        peer: Peer,
        dispatcher: Dispatcher,
        tenant: str,
        default_qos: str,
        model: str,
        config: RealtimeConfig,
    ):
        self.peer = peer
        self.dispatcher = dispatcher
        self.tenant = tenant
        self.default_qos = default_qos
        self.model = model
        self.config = config
        self.id = events.new_id("sess")
        self.settings = events.SessionSettings()
        self.conversation: list[items.Item] = []
        self.response: Response | None = None

    async def run(self) -> None:
        """The session, start to end; however it ends, the response in flight is cancelled first."""
        try:
            await self.peer.send(events.event("session.created", session=self._public()))
            await self._serve()
        except PeerGone:
            pass  # nobody is left to tell
        except Exception:
            log.exception("realtime session %s failed", self.id)
            await self.close(WSCloseCode.INTERNAL_ERROR, "internal error")
        finally:  # a cancelled handler too: aiohttp cancels it when the connection is lost
            await self._end_response("session_closed")

    async def _serve(self) -> None:
        """Client events until the client leaves or a timeout ends the session."""
        deadline = time.monotonic() + self.config.max_lifetime_s
        while True:
            busy = self.response is not None and not self.response.done
            idle_s = None if busy else self.config.idle_timeout_s
            left_s = deadline - time.monotonic()
            try:
                message = await self.peer.ws.receive(timeout=min(left_s, idle_s or left_s))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    code, text = "session_expired", "the session reached its maximum lifetime"
                else:
                    code, text = "idle_timeout", "the session was idle too long"
                await self.close(WSCloseCode.OK, code, events.error_event("session_error", code, text))
                return
            if message.type == WSMsgType.TEXT:
                await self._on_event(message.data)
            elif message.type == WSMsgType.BINARY:
                await self.peer.send(
                    events.error_event("invalid_request_error", "binary_not_supported", "Send JSON text frames.")
                )
            elif message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING):  # the client's close frame (answered), or ours
                return
            else:  # CLOSED: EOF, reset, or closed by now; ERROR: no pong in time, a bad frame, 1009
                if self.peer.ws.close_code == WSCloseCode.ABNORMAL_CLOSURE:  # broken, not closed in good order
                    self.peer.abort()  # bytes still queued for a client that is gone would hold the socket
                return

    async def _on_event(self, text: str) -> None:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):  # not JSON, or an integer of over 4300 digits
            await self.peer.send(
                events.error_event("invalid_request_error", "invalid_json", "The event is not valid JSON.")
            )
            return
        event_type = data.get("type") if isinstance(data, dict) else None
        event_id = data.get("event_id") if isinstance(data, dict) else None
        try:
            if event_type == "session.update":
                self.settings = events.apply_settings(self.settings, data.get("session"))
                await self.peer.send(events.event("session.updated", session=self._public()))
            elif event_type == "conversation.item.create":
                await self._add_item(data.get("item"))
            elif event_type == "response.create":
                await self._start_response(data.get("response"))
            elif event_type == "response.cancel":
                await self._end_response("client_cancelled")
            else:
                raise InvalidRequest(
                    "type", f"Unknown event type {event_type!r}; expected one of {', '.join(events.CLIENT_EVENTS)}."
                )
        except RouterError as error:
            await self.peer.send(events.error_event(error.error_type, error.code, error.message, error.param, event_id))

    async def _add_item(self, data: object) -> None:
        item = items.parse_item(data)
        if sum(i.num_chars for i in self.conversation) + item.num_chars > self.config.max_conversation_chars:
            raise InvalidRequest(
                "item", "The conversation is too long for this session; start a new one.", "conversation_too_long"
            )
        if isinstance(item, items.FunctionCallOutput) and not any(
            isinstance(i, items.FunctionCall) and i.call_id == item.call_id for i in self.conversation
        ):  # as OpenAI checks; the runtime's chat template pairs each output with its call
            raise InvalidRequest(
                "item.call_id", f"No function_call item with call_id {item.call_id!r} in the conversation."
            )
        self.conversation.append(item)
        await self.peer.send(events.event("conversation.item.created", item=item.public()))

    async def _start_response(self, overrides) -> None:
        if self.response is not None and not self.response.done:
            raise InvalidRequest(
                None,
                "A response is already in progress; cancel it or wait for response.done.",
                "conversation_already_has_active_response",
            )
        settings = events.apply_settings(self.settings, overrides)
        if not any(isinstance(i, items.Message) and i.role == "user" for i in self.conversation):
            raise InvalidRequest(None, "The conversation has no user message yet.", "empty_conversation")
        instructions = [pb.ChatMessage(role="system", content=settings.instructions)] if settings.instructions else []
        chat = pb.ChatMessages(
            messages=instructions + items.chat_messages(self.conversation),
            tools=settings.tools,
            tool_choice=settings.tool_choice,
            tool_choice_name=settings.tool_choice_name,
        )
        sampling = pb.SamplingParams()
        if settings.temperature is not None:
            sampling.temperature = settings.temperature
        if settings.max_output_tokens is not None:
            sampling.max_tokens = settings.max_output_tokens
        request = InferenceRequest(
            model=self.model,
            prompt=Prompt(chat=chat),
            sampling=sampling,
            tenant=self.tenant,
            qos=qos_class(self.default_qos, settings.qos),
            session_key=self.id,
        )
        response_id = events.new_id("resp")
        await self.peer.send(
            events.event("response.created", response=events.response_object(response_id, "in_progress"))
        )
        self.response = Response(response_id, request, self.peer, self.dispatcher, self.conversation)

    async def _end_response(self, reason: str) -> None:
        """Cancels the response in flight, if any, and waits until it has sent response.done."""
        if self.response is not None:
            self.response.cancel(reason)
            await self.response.wait()

    async def close(self, code: int, reason: str, goodbye: dict | None = None) -> None:
        """Ends the session from the router's side: the response in flight ends (its response.done
        sent), then the goodbye event if any, then the close frame."""
        await self._end_response("session_closed")
        if goodbye is not None:
            try:
                await self.peer.send(goodbye, CLOSE_TIMEOUT_S)
            except PeerGone:
                return
        await self.peer.close(code, reason)

    def _public(self) -> dict:
        return {"id": self.id, "object": "realtime.session", "model": self.model, **self.settings.public()}
