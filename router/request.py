"""The router's own request type: what every surface (OpenAI HTTP, gRPC, WebSocket) parses into and
the dispatcher routes. Sampling is carried as the runtime's SamplingParams message, which is what it
becomes upstream; responses come back as the runtime's GenerateResponse messages.

`validated` is the one check of a request's values every surface runs, once, before anything is
built from them: ranges (the runtime's int32 fields included, so no value overflows its proto
field), the stop list, chat roles, and text that UTF-8 can carry (JSON may hold lone surrogates,
protobuf may not). The surfaces check only the shapes of their own formats (JSON types, proto oneofs).
"""

import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from shoal.router.chat_prompt import checked_chat
from shoal.router.errors import InvalidRequest
from shoal.router.schemas import check_json_schema
from shoal.router.text import check_text
from shoal.v1 import runtime_pb2 as pb

INT32_MAX = 2**31 - 1
FLOAT32_MAX = 3.4028234663852886e38
MAX_TOP_LOGPROBS = 20  # OpenAI's and the runtime's cap
MAX_STOP = 4  # OpenAI's cap on stop sequences
FORCED_TOOL_CHOICES = (pb.TOOL_CHOICE_REQUIRED, pb.TOOL_CHOICE_NAMED)  # enforced by a grammar


@dataclass(frozen=True)
class Prompt:
    """Exactly one of text, token_ids or chat (messages and tools, templated by the runtime)."""

    text: str | None = None
    token_ids: tuple[int, ...] | None = None
    chat: pb.ChatMessages | None = None

    def num_chars(self) -> int:
        if self.text is not None:
            return len(self.text)
        if self.token_ids is not None:
            return len(self.token_ids) * 4  # a token is ~4 characters
        return sum(len(m.role) + len(m.content) for m in self._messages())

    def head(self, num_chars: int) -> str:
        """The prompt's first characters, for prefix affinity."""
        if self.text is not None:
            return self.text[:num_chars]
        if self.token_ids is not None:
            return ",".join(map(str, self.token_ids))[:num_chars]
        return "\0".join(f"{m.role}\0{m.content}" for m in self._messages())[:num_chars]

    def to_proto(self, request: pb.GenerateRequest) -> None:
        if self.text is not None:
            request.text = self.text
        elif self.token_ids is not None:
            request.token_ids.ids.extend(self.token_ids)
        elif self.chat is not None:
            request.chat.CopyFrom(self.chat)

    def _messages(self):
        return self.chat.messages if self.chat is not None else ()


@dataclass(frozen=True)
class InferenceRequest:
    model: str
    prompt: Prompt
    sampling: pb.SamplingParams
    tenant: str
    qos: str  # "realtime" or "batch"
    session_key: str | None = None  # sticky canary and replica affinity
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    n: int = 1  # choices (OpenAI's n); the runtime runs them as sequences sharing the prompt's KV


@dataclass(frozen=True)
class Limit:
    """A number's allowed range; NaN and infinities are never allowed."""

    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None  # an exclusive minimum

    def check(self, name: str, value: float) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidRequest(name, f"Invalid '{name}': expected a finite number, got {value}.")
        if self.minimum is not None and value < self.minimum:
            raise InvalidRequest(name, f"{value} is less than the minimum of {self.minimum} - '{name}'")
        if self.maximum is not None and value > self.maximum:
            raise InvalidRequest(name, f"{value} is greater than the maximum of {self.maximum} - '{name}'")
        if self.above is not None and value <= self.above:
            raise InvalidRequest(name, f"{value} is less than or equal to the minimum of {self.above} - '{name}'")


# By SamplingParams field; a repeated field's limit holds for each item.
SAMPLING_LIMITS = {
    "temperature": Limit(0, 2),
    "top_p": Limit(maximum=1, above=0),
    "top_k": Limit(-1, INT32_MAX),
    "min_p": Limit(0, 1),
    "seed": Limit(-(2**63), 2**63 - 1),
    "repetition_penalty": Limit(maximum=FLOAT32_MAX, above=0),
    "presence_penalty": Limit(-2, 2),
    "frequency_penalty": Limit(-2, 2),
    "max_tokens": Limit(1, INT32_MAX),
    "stop_token_ids": Limit(0, INT32_MAX),
    "logprobs": Limit(0, MAX_TOP_LOGPROBS),
}
TOKEN_ID = Limit(0, INT32_MAX)


def validated(
    prompt: Prompt, sampling: Mapping[str, object], name: Callable[[str], str] = str
) -> tuple[Prompt, pb.SamplingParams]:
    """The prompt (`developer` turns as `system`) and the runtime's SamplingParams, or InvalidRequest.

    `sampling` maps SamplingParams fields to values of their type, unset ones left out. `name` gives
    a field's name on the calling surface (`max_tokens`, `messages[0].role`, `prompt`) as that surface
    calls it, for the error's param and message.
    """
    prompt = _checked_prompt(prompt, name)  # first, as the surfaces check the prompt's shape before the rest
    for key in (f.name for f in pb.SamplingParams.DESCRIPTOR.fields if f.name in sampling):  # one order for all
        value = sampling[key]
        if key == "stop":
            _check_stop(name(key), value)
        elif key == "structured":
            _check_structured(name, value)
        elif key in SAMPLING_LIMITS:
            for item in value if isinstance(value, list) else [value]:
                SAMPLING_LIMITS[key].check(name(key), item)
    if "structured" in sampling and prompt.chat is not None and prompt.chat.tool_choice in FORCED_TOOL_CHOICES:
        raise InvalidRequest(
            name("tool_choice"),
            f"Invalid '{name('tool_choice')}': a call it forces cannot follow another output constraint as well.",
        )
    return prompt, pb.SamplingParams(**sampling)


def _check_structured(name: Callable[[str], str], structured: pb.StructuredOutput) -> None:
    """A JSON schema must be one (checked against its own metaschema, as OpenAI does before it
    compiles); its text, a regex's and a grammar's must be UTF-8. Whether the runtime can compile a
    regex or grammar is its to say (INVALID_ARGUMENT)."""
    kind = structured.WhichOneof("kind")
    if kind is None:
        return  # nothing asked of the output (an empty message from a gRPC client)
    param = name(f"structured.{kind}")
    value = getattr(structured, kind)
    if kind == "json_object":
        return
    if kind == "json_schema":
        check_json_schema(param, value)
    else:
        check_text(param, value)


def _check_stop(name: str, stop: list[str]) -> None:
    if len(stop) > MAX_STOP:
        raise InvalidRequest(name, f"Invalid '{name}': at most {MAX_STOP} stop sequences, got {len(stop)}.")
    for item in stop:
        if not item:
            raise InvalidRequest(name, f"Invalid '{name}': stop sequences must not be empty.")
        check_text(name, item)


def _checked_prompt(prompt: Prompt, name: Callable[[str], str]) -> Prompt:
    if prompt.text is not None:
        check_text(name("prompt"), prompt.text)
        return prompt
    if prompt.token_ids is not None:
        if not prompt.token_ids:
            raise InvalidRequest(name("prompt"), f"Invalid '{name('prompt')}': expected at least one token id.")
        for token_id in prompt.token_ids:
            TOKEN_ID.check(name("prompt"), token_id)
        return prompt
    return Prompt(chat=checked_chat(prompt.chat or pb.ChatMessages(), name))
