"""The router's own request type: what every surface (OpenAI HTTP, gRPC, WebSocket) parses into and
the dispatcher routes. Sampling is carried as the runtime's SamplingParams message, which is what it
becomes upstream; responses come back as the runtime's GenerateResponse messages."""

import uuid
from dataclasses import dataclass, field

from shoal.v1 import runtime_pb2 as pb


@dataclass(frozen=True)
class Prompt:
    """Exactly one of text, token_ids or messages ((role, content) pairs, templated by the runtime)."""

    text: str | None = None
    token_ids: tuple[int, ...] | None = None
    messages: tuple[tuple[str, str], ...] | None = None

    def num_chars(self) -> int:
        if self.text is not None:
            return len(self.text)
        if self.token_ids is not None:
            return len(self.token_ids) * 4  # a token is ~4 characters
        return sum(len(role) + len(content) for role, content in self.messages or ())

    def head(self, num_chars: int) -> str:
        """The prompt's first characters, for prefix affinity."""
        if self.text is not None:
            return self.text[:num_chars]
        if self.token_ids is not None:
            return ",".join(map(str, self.token_ids))[:num_chars]
        return "\0".join(f"{role}\0{content}" for role, content in self.messages or ())[:num_chars]

    def to_proto(self, request: pb.GenerateRequest) -> None:
        if self.text is not None:
            request.text = self.text
        elif self.token_ids is not None:
            request.token_ids.ids.extend(self.token_ids)
        else:
            request.chat.messages.extend(pb.ChatMessage(role=r, content=c) for r, c in self.messages or ())


@dataclass(frozen=True)
class InferenceRequest:
    model: str
    prompt: Prompt
    sampling: pb.SamplingParams
    tenant: str
    qos: str  # "realtime" or "batch"
    session_key: str | None = None  # sticky canary and replica affinity
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
