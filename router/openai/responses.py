"""OpenAI response objects built from the runtime's GenerateResponse messages: chat.completion and
its chunks, text_completion and its chunks, usage, logprobs, and the model list."""

import time
from dataclasses import dataclass, field

from shoal.v1 import runtime_pb2 as pb

FINISH_REASONS = {pb.FINISH_REASON_STOP: "stop", pb.FINISH_REASON_LENGTH: "length"}


@dataclass
class ResponseMeta:
    """What every object or chunk of one response repeats."""

    id: str
    model: str
    revision: str
    service_tier: str
    created: int = field(default_factory=lambda: int(time.time()))

    def header(self, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    @property
    def system_fingerprint(self) -> str:
        return f"shoal-{self.revision}"


def usage(final: pb.GenerateResponse) -> dict:
    u = final.usage
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_prompt_tokens},
    }


def chat_logprobs(messages: list[pb.GenerateResponse]) -> dict:
    return {
        "content": [
            {
                "token": lp.token,
                "logprob": lp.logprob,
                "bytes": list(lp.token.encode()),
                "top_logprobs": [
                    {"token": t.token, "logprob": t.logprob, "bytes": list(t.token.encode())} for t in lp.top_logprobs
                ],
            }
            for m in messages
            for lp in m.logprobs
        ]
    }


def completion_logprobs(messages: list[pb.GenerateResponse], text_offset: int = 0) -> dict:
    tokens, token_logprobs, top, offsets = [], [], [], []
    for m in messages:
        for lp in m.logprobs:
            tokens.append(lp.token)
            token_logprobs.append(lp.logprob)
            top.append({t.token: t.logprob for t in lp.top_logprobs})
            offsets.append(text_offset)
            text_offset += len(lp.token)
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top, "text_offset": offsets}


def chat_completion(meta: ResponseMeta, messages: list[pb.GenerateResponse], logprobs: bool) -> dict:
    final = messages[-1]
    return meta.header("chat.completion") | {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(m.text for m in messages), "refusal": None},
                "logprobs": chat_logprobs(messages) if logprobs else None,
                "finish_reason": FINISH_REASONS[final.finish_reason],
                "stop_reason": final.stop_reason or None,
            }
        ],
        "usage": usage(final),
        "system_fingerprint": meta.system_fingerprint,
        "service_tier": meta.service_tier,
    }


def text_completion(meta: ResponseMeta, messages: list[pb.GenerateResponse], logprobs: bool) -> dict:
    final = messages[-1]
    return meta.header("text_completion") | {
        "choices": [
            {
                "index": 0,
                "text": "".join(m.text for m in messages),
                "logprobs": completion_logprobs(messages) if logprobs else None,
                "finish_reason": FINISH_REASONS[final.finish_reason],
                "stop_reason": final.stop_reason or None,
            }
        ],
        "usage": usage(final),
        "system_fingerprint": meta.system_fingerprint,
    }


def chat_chunk(
    meta: ResponseMeta, delta: dict, include_usage: bool, finish_reason: str | None = None, logprobs: dict | None = None
) -> dict:
    return _chunk(meta, "chat.completion.chunk", {"delta": delta}, include_usage, finish_reason, logprobs)


def completion_chunk(
    meta: ResponseMeta, text: str, include_usage: bool, finish_reason: str | None = None, logprobs: dict | None = None
) -> dict:
    return _chunk(meta, "text_completion", {"text": text}, include_usage, finish_reason, logprobs)


def _chunk(
    meta: ResponseMeta, obj: str, content: dict, include_usage: bool, finish_reason: str | None, logprobs: dict | None
) -> dict:
    chunk = meta.header(obj) | {
        "system_fingerprint": meta.system_fingerprint,
        "choices": [{"index": 0, **content, "logprobs": logprobs, "finish_reason": finish_reason}],
    }
    if include_usage:
        chunk["usage"] = None  # OpenAI: null on every chunk but the last, which carries it
    return chunk


def usage_chunk(meta: ResponseMeta, obj: str, final: pb.GenerateResponse) -> dict:
    return meta.header(obj) | {"system_fingerprint": meta.system_fingerprint, "choices": [], "usage": usage(final)}


def model_object(model: str, created: int) -> dict:
    return {"id": model, "object": "model", "created": created, "owned_by": "shoal"}
