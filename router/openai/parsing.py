"""OpenAI chat and completions request bodies -> the router's Prompt and the runtime's sampling.

Supported: OpenAI's sampling parameters (temperature, top_p, max_tokens / max_completion_tokens,
stop, seed, presence/frequency penalties, logprobs), streaming with stream_options.include_usage,
user, service_tier, and vLLM's extras (top_k, min_p, repetition_penalty, ignore_eos,
stop_token_ids, skip_special_tokens, priority); output constraints from `response_format` and vLLM's
`structured_outputs` (structured.py), `n` choices, and on completions `best_of` (best_of.py). One
prompt per request.

Here the body's JSON types are checked; the values' ranges, the stop list, roles and text are
checked by request.validated, the same function the gRPC API calls, so both refuse the same requests.
"""

from dataclasses import dataclass, replace

from shoal.router.errors import InvalidRequest
from shoal.router.openai.fields import Body, prefixed
from shoal.router.openai.structured import structured_output
from shoal.router.openai.tools import openai_field, read_tool_calls, read_tools
from shoal.router.request import INT32_MAX, MAX_TOP_LOGPROBS, Prompt, validated
from shoal.router.text import check_text
from shoal.v1 import runtime_pb2 as pb

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
    n: int = 1  # choices; the runtime caps it (--max-n) and names `n` when over
    best_of: int | None = None  # completions: choices generated, of which the n best are returned
    prompt_param: str = "messages"  # what this endpoint calls the runtime's `prompt`

    @property
    def runtime_n(self) -> int:
        return self.best_of or self.n

    def runtime_field(self, param: str) -> str:
        if param == "prompt":
            return self.prompt_param
        return "best_of" if param == "n" and self.best_of is not None else param


def parse_chat(data: object) -> ParsedRequest:
    body = Body(data)
    model = body.string("model")
    chat = pb.ChatMessages(messages=_messages(body))
    sampling = _sampling(body)
    max_tokens = body.integer("max_completion_tokens", None)
    legacy_max = body.integer("max_tokens", None)
    if max_tokens is None:
        max_tokens = legacy_max
    if max_tokens is not None:
        sampling["max_tokens"] = max_tokens
    logprobs = body.boolean("logprobs", False)
    top_logprobs = body.integer("top_logprobs", None, minimum=0, maximum=MAX_TOP_LOGPROBS)
    if top_logprobs is not None and not logprobs:
        raise InvalidRequest("top_logprobs", "'top_logprobs' requires 'logprobs' to be true.")
    if logprobs:
        sampling["logprobs"] = top_logprobs or 0
    read_tools(body, chat)
    body.no_op("functions", [])
    body.no_op("function_call", "none")
    body.no_op("modalities", ["text"])
    structured = structured_output(body, chat=True)
    if structured is not None:
        sampling["structured"] = structured
    named = "max_completion_tokens" if body.has("max_completion_tokens") else "max_tokens"
    prompt, params = validated(Prompt(chat=chat), sampling, lambda f: named if f == "max_tokens" else openai_field(f))
    return _finish(body, model, prompt, params, logprobs)


def parse_completion(data: object) -> ParsedRequest:
    body = Body(data)
    model = body.string("model")
    prompt = _completion_prompt(body)
    sampling = _sampling(body)
    sampling["max_tokens"] = body.integer("max_tokens", COMPLETIONS_DEFAULT_MAX_TOKENS)
    logprobs = body.integer("logprobs", None)
    if logprobs is not None:
        sampling["logprobs"] = logprobs
    body.no_op("echo", False)
    body.no_op("suffix", "")
    best_of = body.integer("best_of", None, minimum=1, maximum=INT32_MAX)
    if best_of is not None and logprobs is None:
        sampling["logprobs"] = 0  # each token's own logprob ranks the choices
    structured = structured_output(body, chat=False)
    if structured is not None:
        sampling["structured"] = structured
    prompt, params = validated(prompt, sampling)
    parsed = replace(_finish(body, model, prompt, params, logprobs is not None), prompt_param="prompt")
    if best_of is None:
        return parsed
    if best_of < parsed.n:
        raise InvalidRequest("best_of", f"'best_of' ({best_of}) must be greater than or equal to 'n' ({parsed.n}).")
    if parsed.stream:
        raise InvalidRequest("best_of", "'best_of' cannot be used with 'stream': the best are known only at the end.")
    return replace(parsed, best_of=best_of)


def _finish(body: Body, model: str, prompt: Prompt, sampling: pb.SamplingParams, logprobs: bool) -> ParsedRequest:
    stream = body.boolean("stream", False)
    include_usage = False
    options = body.raw("stream_options")
    if options is not None:
        if not stream:
            raise InvalidRequest("stream_options", "'stream_options' is only allowed when 'stream' is true.")
        with prefixed("stream_options."):
            options_body = Body(options)
            include_usage = options_body.boolean("include_usage", False)
            options_body.ignored("continuous_usage_stats")
            options_body.done()
    parsed = ParsedRequest(
        n=body.integer("n", 1, minimum=1, maximum=INT32_MAX),
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
    body.ignored("metadata")
    body.done()
    return parsed


def _sampling(body: Body) -> dict[str, object]:
    """The sampling fields present, by their SamplingParams name, type-checked; `validated` checks ranges."""
    values = {
        "temperature": body.number("temperature", None),
        "top_p": body.number("top_p", None),
        "presence_penalty": body.number("presence_penalty", None),
        "frequency_penalty": body.number("frequency_penalty", None),
        "seed": body.integer("seed", None),
        "top_k": body.integer("top_k", None),
        "min_p": body.number("min_p", None),
        "repetition_penalty": body.number("repetition_penalty", None),
        "skip_special_tokens": body.boolean("skip_special_tokens", None),
        "stop": body.strings("stop"),
        "stop_token_ids": body.int_list("stop_token_ids"),
        "ignore_eos": body.boolean("ignore_eos", None),
        "speculative": body.boolean("speculative", None),  # Shoal's: false opts out of speculative decoding
    }
    return {name: value for name, value in values.items() if value is not None}


def _messages(body: Body) -> list[pb.ChatMessage]:
    messages = body.raw("messages")
    if messages is None:
        raise InvalidRequest("messages", "Missing required parameter: 'messages'.")
    if not isinstance(messages, list):
        raise InvalidRequest("messages", "Invalid 'messages': expected a non-empty array of messages.")
    out = []
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise InvalidRequest(param, f"Invalid '{param}': expected an object.")
        with prefixed(param + "."):
            m = Body(message)
            role = m.string("role")
            tool_calls = m.raw("tool_calls")
            calls = read_tool_calls(tool_calls) if tool_calls is not None else []
            content = m.raw("content")
            # An assistant's turn that only calls functions has no content (OpenAI sends null).
            text = "" if content is None and role == "assistant" and calls else _content(content)
            check_text("content", text)
            out.append(
                pb.ChatMessage(
                    role=role,
                    content=text,
                    tool_calls=calls,
                    tool_call_id=m.string("tool_call_id", ""),
                    name=m.string("name", ""),
                )
            )
            m.done()
    return out


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
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return Prompt(token_ids=tuple(prompt))
    if isinstance(prompt, list) and prompt and all(isinstance(p, (str, list)) for p in prompt):
        raise InvalidRequest("prompt", "Only one prompt per request is supported.")
    raise InvalidRequest(
        "prompt", "Invalid 'prompt': expected a string, an array of token ids, or an array with one of those."
    )
