"""Admission of an OpenAI request, whichever endpoint parsed it: API key -> tenant (401), JSON body
(400/413), parameters (400), QoS class, then the dispatcher (404 unknown model, 429 limits or
overload, 503 no backend, 400/500 from the runtime), which waits for the runtime's first message.
A refusal carries the tenant's x-ratelimit-* headers; an admitted request's answer carries them
with x-request-id and x-shoal-revision (which revision served it)."""

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from aiohttp import web

from shoal.router.dispatch import Dispatcher, Generation
from shoal.router.errors import RouterError
from shoal.router.identity import QOS_HEADER, SESSION_HEADER, Authenticator, qos_class
from shoal.router.openai.errors import read_json
from shoal.router.request import InferenceRequest, Prompt
from shoal.v1 import runtime_pb2 as pb


class Admissible(Protocol):
    """What admission reads of a parsed request, whichever endpoint parsed it."""

    @property
    def model(self) -> str: ...
    @property
    def prompt(self) -> Prompt: ...
    @property
    def sampling(self) -> pb.SamplingParams: ...
    @property
    def service_tier(self) -> str | None: ...
    @property
    def priority(self) -> int | None: ...
    @property
    def user(self) -> str | None: ...
    @property
    def runtime_n(self) -> int: ...  # choices the runtime generates
    def runtime_field(self, param: str) -> str: ...  # a field the runtime refused, as the endpoint names it


P = TypeVar("P", bound=Admissible)


@dataclass(frozen=True)
class Admitted(Generic[P]):
    """A request the dispatcher started, with what every answer to it carries."""

    parsed: P
    inference: InferenceRequest
    generation: Generation
    headers: dict[str, str]  # x-ratelimit-*, x-request-id, x-shoal-revision

    @property
    def service_tier(self) -> str:
        """As the response states it."""
        return "flex" if self.inference.qos == "batch" else "default"


class Admission:
    def __init__(self, dispatcher: Dispatcher, auth: Authenticator, body_timeout_s: float):
        self.dispatcher = dispatcher
        self.auth = auth
        self.body_timeout_s = body_timeout_s

    @contextlib.asynccontextmanager
    async def admitted(self, request: web.Request, parse: Callable[[object], P]) -> AsyncIterator[Admitted[P]]:
        """Tenant, body, parameters, QoS class, then the dispatcher, which waits for the runtime's
        first message; the generation is closed when the block ends. A refusal is raised with the
        tenant's limit headers, naming what the runtime refused as the endpoint does."""
        tenant = self.auth.tenant(request.headers.get("Authorization"))
        parsed = inference = None
        qos = self.auth.default_qos(tenant)  # until the request says its own: it picks the model's pool
        limit_headers = lambda: self.dispatcher.limit_headers(tenant, parsed.model if parsed else None, qos)  # noqa: E731
        try:
            parsed = parse(await read_json(request, self.body_timeout_s))
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
                n=parsed.runtime_n,
            )
            generation = await self.dispatcher.start(inference)
        except RouterError as error:
            if inference is None:  # refused here, before the dispatcher (which counts its own refusals)
                self.dispatcher.metrics.refused("", self.auth.default_qos(tenant), tenant, error.http_status)
            elif error.param is not None:
                error.param = parsed.runtime_field(error.param)
            error.headers = {**limit_headers(), **error.headers}
            raise
        try:
            headers = {**limit_headers(), "x-request-id": inference.request_id, "x-shoal-revision": generation.revision}
            yield Admitted(parsed, inference, generation, headers)
        finally:
            await generation.close()
