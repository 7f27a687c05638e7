"""OpenAI response objects built from the runtime's GenerateResponse messages: chat.completion and
its chunks, text_completion and its chunks, usage, logprobs, and the model list. A request of n
choices has its messages interleaved, each tagged with its choice's index; usage counts the prompt
once and every choice's completion."""

import time
from dataclasses import dataclass, field

from shoal.v1 import runtime_pb2 as pb

FINISH_REASONS = {
    pb.FINISH_REASON_STOP: "stop",
    pb.FINISH_REASON_LENGTH: "length",
    pb.FINISH_REASON_TOOL_CALLS: "tool_calls",
}


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


def usage(finals: list[pb.GenerateResponse]) -> dict:
    """Over every choice's last message."""
    prompt = finals[0].usage.prompt_tokens
    completion = sum(f.usage.completion_tokens for f in finals)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": finals[0].usage.cached_prompt_tokens},
    }


def by_choice(messages: list[pb.GenerateResponse]) -> list[list[pb.GenerateResponse]]:
    """The messages of each choice, in the order of their index."""
    choices: dict[int, list[pb.GenerateResponse]] = {}
    for message in messages:
        choices.setdefault(message.index, []).append(message)
    return [choices[index] for index in sorted(choices)]


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


def tool_calls(messages: list[pb.GenerateResponse]) -> list[dict]:
    """One choice's function calls, put together from their streamed pieces."""
    calls: dict[int, dict] = {}
    for message in messages:
        for piece in message.tool_calls:
            call = calls.setdefault(
                piece.index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
            )
            call["id"] = call["id"] or piece.id
            call["function"]["name"] = call["function"]["name"] or piece.name
            call["function"]["arguments"] += piece.arguments
    return [calls[index] for index in sorted(calls)]


def tool_call_deltas(pieces) -> list[dict]:
    """A streamed chunk's `tool_calls`: id, type and name with a call's first piece, then arguments."""
    deltas = []
    for piece in pieces:
        delta: dict = {"index": piece.index}
        if piece.id:
            delta |= {
                "id": piece.id,
                "type": "function",
                "function": {"name": piece.name, "arguments": piece.arguments},
            }
        else:
            delta["function"] = {"arguments": piece.arguments}
        deltas.append(delta)
    return deltas


def _assistant_message(choice: list[pb.GenerateResponse]) -> dict:
    content = "".join(m.text for m in choice)
    calls = tool_calls(choice)
    message = {"role": "assistant", "content": content if content or not calls else None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    return message


def chat_completion(meta: ResponseMeta, messages: list[pb.GenerateResponse], logprobs: bool) -> dict:
    choices = by_choice(messages)
    return meta.header("chat.completion") | {
        "choices": [
            {
                "index": choice[-1].index,
                "message": _assistant_message(choice),
                "logprobs": chat_logprobs(choice) if logprobs else None,
                "finish_reason": FINISH_REASONS[choice[-1].finish_reason],
                "stop_reason": choice[-1].stop_reason or None,
            }
            for choice in choices
        ],
        "usage": usage([choice[-1] for choice in choices]),
        "system_fingerprint": meta.system_fingerprint,
        "service_tier": meta.service_tier,
    }


def text_completion(meta: ResponseMeta, messages: list[pb.GenerateResponse], logprobs: bool) -> dict:
    choices = by_choice(messages)
    return meta.header("text_completion") | {
        "choices": [
            {
                "index": choice[-1].index,
                "text": "".join(m.text for m in choice),
                "logprobs": completion_logprobs(choice) if logprobs else None,
                "finish_reason": FINISH_REASONS[choice[-1].finish_reason],
                "stop_reason": choice[-1].stop_reason or None,
            }
            for choice in choices
        ],
        "usage": usage([choice[-1] for choice in choices]),
        "system_fingerprint": meta.system_fingerprint,
    }


@dataclass(frozen=True)
class ChunkChoice:
    """One choice's part of a streamed chunk."""

    index: int = 0
    finish_reason: str | None = None
    logprobs: dict | None = None


def chat_chunk(meta: ResponseMeta, delta: dict, include_usage: bool, choice: ChunkChoice = ChunkChoice()) -> dict:
    return _chunk(meta, "chat.completion.chunk", {"delta": delta}, include_usage, choice)


def completion_chunk(meta: ResponseMeta, text: str, include_usage: bool, choice: ChunkChoice = ChunkChoice()) -> dict:
    return _chunk(meta, "text_completion", {"text": text}, include_usage, choice)


def _chunk(meta: ResponseMeta, obj: str, content: dict, include_usage: bool, choice: ChunkChoice) -> dict:
    chunk = meta.header(obj) | {
        "system_fingerprint": meta.system_fingerprint,
        "choices": [
            {"index": choice.index, **content, "logprobs": choice.logprobs, "finish_reason": choice.finish_reason}
        ],
    }
    if include_usage:
        chunk["usage"] = None  # OpenAI: null on every chunk but the last, which carries it
    return chunk


def usage_chunk(meta: ResponseMeta, obj: str, finals: list[pb.GenerateResponse]) -> dict:
    return meta.header(obj) | {"system_fingerprint": meta.system_fingerprint, "choices": [], "usage": usage(finals)}


def model_object(model: str, created: int) -> dict:
    return {"id": model, "object": "model", "created": created, "owned_by": "shoal"}
