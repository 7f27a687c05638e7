"""OpenAI chat and completions request bodies -> the router's Prompt and the runtime's sampling.

Supported: OpenAI's sampling parameters (temperature, top_p, max_tokens / max_completion_tokens,
stop, seed, presence/frequency penalties, logprobs), streaming with stream_options.include_usage,
user, service_tier, and vLLM's extras (top_k, min_p, repetition_penalty, ignore_eos,
stop_token_ids, skip_special_tokens, priority). One choice per request (n = 1) and one prompt.
"""

import contextlib
from dataclasses import dataclass

from shoal.router.errors import InvalidRequest
from shoal.router.openai.fields import Body
from shoal.router.request import Prompt
from shoal.v1 import runtime_pb2 as pb

CHAT_ROLES = ("system", "developer", "user", "assistant", "tool")
MAX_TOP_LOGPROBS = 20  # OpenAI's and the runtime's cap
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


@dataclass(frozen=True)
class ParsedRequest:
    model: str
    prompt: Prompt
    sampling: pb.SamplingParams
    stream: bool
    include_usage: bool
    logprobs: bool
    service_tier: str | None
    priority: int | None
    user: str | None


def parse_chat(data: object) -> ParsedRequest:
    body = Body(data)
    model = body.string("model")
    prompt = Prompt(messages=_messages(body))
    sampling = _sampling(body)
    max_tokens = body.integer("max_completion_tokens", None, minimum=1)
    legacy_max = body.integer("max_tokens", None, minimum=1)
    if max_tokens is None:
        max_tokens = legacy_max
    if max_tokens is not None:
        sampling.max_tokens = max_tokens
    logprobs = body.boolean("logprobs", False)
    top_logprobs = body.integer("top_logprobs", None, minimum=0, maximum=MAX_TOP_LOGPROBS)
    if top_logprobs is not None and not logprobs:
        raise InvalidRequest("top_logprobs", "'top_logprobs' requires 'logprobs' to be true.")
    if logprobs:
        sampling.logprobs = top_logprobs or 0
    body.no_op("tools", [])
    body.no_op("tool_choice", "none")
    body.no_op("functions", [])
    body.no_op("function_call", "none")
    body.no_op("response_format", {"type": "text"})
    body.no_op("modalities", ["text"])
    return _finish(body, model, prompt, sampling, logprobs)


def parse_completion(data: object) -> ParsedRequest:
    body = Body(data)
    model = body.string("model")
    prompt = _completion_prompt(body)
    sampling = _sampling(body)
    sampling.max_tokens = body.integer("max_tokens", COMPLETIONS_DEFAULT_MAX_TOKENS, minimum=1)
    logprobs = body.integer("logprobs", None, minimum=0, maximum=MAX_TOP_LOGPROBS)
    if logprobs is not None:
        sampling.logprobs = logprobs
    body.no_op("echo", False)
    body.no_op("suffix", "")
    body.no_op("best_of", 1)
    return _finish(body, model, prompt, sampling, logprobs is not None)


def _finish(body: Body, model: str, prompt: Prompt, sampling: pb.SamplingParams, logprobs: bool) -> ParsedRequest:
    stream = body.boolean("stream", False)
    include_usage = False
    options = body.raw("stream_options")
    if options is not None:
        if not stream:
            raise InvalidRequest("stream_options", "'stream_options' is only allowed when 'stream' is true.")
        with _prefixed("stream_options."):
            options_body = Body(options)
            include_usage = options_body.boolean("include_usage", False)
            options_body.ignored("continuous_usage_stats")
            options_body.done()
    parsed = ParsedRequest(
        model=model,
        prompt=prompt,
        sampling=sampling,
        stream=stream,
        include_usage=include_usage,
        logprobs=logprobs,
        service_tier=body.string("service_tier", None),
        priority=body.integer("priority", None),
        user=body.string("user", None),
    )
    body.no_op("logit_bias", {})
    body.no_op("store", False)
    body.ignored("metadata", "parallel_tool_calls")
    body.done()
    return parsed


def _sampling(body: Body) -> pb.SamplingParams:
    n = body.integer("n", 1, minimum=1)
    if n != 1:
        raise InvalidRequest("n", "Only n=1 is supported: ask once per choice.")
    sampling = pb.SamplingParams()
    for name, value in (
        ("temperature", body.number("temperature", None, minimum=0, maximum=2)),
        ("top_p", body.number("top_p", None, maximum=1, above=0)),
        ("presence_penalty", body.number("presence_penalty", None, minimum=-2, maximum=2)),
        ("frequency_penalty", body.number("frequency_penalty", None, minimum=-2, maximum=2)),
        ("seed", body.integer("seed", None, minimum=-(2**63), maximum=2**63 - 1)),
        ("top_k", body.integer("top_k", None, minimum=-1)),
        ("min_p", body.number("min_p", None, minimum=0, maximum=1)),
        ("repetition_penalty", body.number("repetition_penalty", None, above=0)),
        ("skip_special_tokens", body.boolean("skip_special_tokens", None)),
    ):
        if value is not None:
            setattr(sampling, name, value)
    sampling.stop.extend(body.stop())
    sampling.stop_token_ids.extend(body.int_list("stop_token_ids") or ())
    sampling.ignore_eos = bool(body.boolean("ignore_eos", False))
    return sampling


def _messages(body: Body) -> tuple[tuple[str, str], ...]:
    messages = body.raw("messages")
    if messages is None:
        raise InvalidRequest("messages", "Missing required parameter: 'messages'.")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages", "Invalid 'messages': expected a non-empty array of messages.")
    out = []
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise InvalidRequest(param, f"Invalid '{param}': expected an object.")
        with _prefixed(param + "."):
            m = Body(message)
            role = m.string("role", choices=CHAT_ROLES)
            content = _content(m.raw("content"))
            m.ignored("name", "tool_call_id")
            m.no_op("tool_calls", [])
            m.done()
        out.append(("system" if role == "developer" else role, content))
    return tuple(out)


def _content(content) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        raise InvalidRequest("content", "Missing required parameter: 'content'.")
    if not isinstance(content, list):
        raise InvalidRequest("content", "Invalid type for 'content': expected a string or an array of content parts.")
    texts = []
    for index, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise InvalidRequest(f"content[{index}]", "Only text content parts are supported.")
        texts.append(part["text"])
    return "".join(texts)


def _completion_prompt(body: Body) -> Prompt:
    prompt = body.raw("prompt")
    if prompt is None:
        raise InvalidRequest("prompt", "Missing required parameter: 'prompt'.")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        return Prompt(text=prompt)
    if (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in prompt)
    ):
        return Prompt(token_ids=tuple(prompt))
    if isinstance(prompt, list) and prompt and all(isinstance(p, (str, list)) for p in prompt):
        raise InvalidRequest("prompt", "Only one prompt per request is supported.")
    raise InvalidRequest(
        "prompt", "Invalid 'prompt': expected a string, an array of token ids, or an array with one of those."
    )


@contextlib.contextmanager
def _prefixed(prefix: str):
    """Names a nested object's fields with their parent's path (`messages[0].role`)."""
    try:
        yield
    except InvalidRequest as error:
        raise InvalidRequest(prefix + (error.param or ""), error.message) from None
