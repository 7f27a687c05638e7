"""A Responses API request body -> the router's Prompt, the runtime's sampling, and what the response repeats.

Supported: `model`, `input` and `instructions` (input_items.py), `max_output_tokens`, `temperature`,
`top_p`, `stream` (with `stream_options.include_obfuscation`, which changes nothing: there is no
obfuscation padding to turn off), `text.format` (text, json_object or json_schema, as constrained
decoding), function `tools` with `tool_choice` and `parallel_tool_calls` (tools.py), `user`,
`metadata`, `service_tier` and vLLM's `priority` (QoS class), `store` and `truncation: "disabled"`.
Nothing is stored, so `previous_response_id` and `conversation` are refused with a hint to send
the whole conversation; other fields (`reasoning`, `include`, `background`, `prompt`, ...) are
refused by name. As on chat, request.validated checks the values, and its field names are turned
into this API's (`max_tokens` -> `max_output_tokens`, `messages[2].content` -> `input[1].content`).
"""

from dataclasses import dataclass

from shoal.router.errors import InvalidRequest
from shoal.router.openai.fields import Body, prefixed
from shoal.router.openai.responses_api.input_items import read_input
from shoal.router.openai.responses_api.objects import Echo
from shoal.router.openai.responses_api.tools import read_tool_choice, read_tools
from shoal.router.openai.structured import json_schema_output
from shoal.router.request import Prompt, validated
from shoal.v1 import runtime_pb2 as pb

TEXT_FORMATS = ("text", "json_object", "json_schema")
MAX_METADATA = 16  # OpenAI's caps on `metadata`: pairs, key and value lengths
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
NOT_STORED = (
    "This server does not store responses or conversations, so '{}' cannot be used: "
    "send the whole conversation in 'input' (earlier output items may be sent back as input items)."
)
_RENAMES = {"max_tokens": "max_output_tokens", "prompt": "input", "structured.json_schema": "text.format.schema"}


@dataclass(frozen=True)
class ResponsesRequest:
    model: str
    prompt: Prompt
    sampling: pb.SamplingParams
    stream: bool
    service_tier: str | None
    priority: int | None
    user: str | None
    echo: Echo

    @property
    def runtime_n(self) -> int:
        return 1  # a response has one answer

    def runtime_field(self, param: str) -> str:
        return field_name(param)


def field_name(field: str) -> str:
    """A runtime or request.validated field name as the Responses API calls it (`max_tokens` ->
    `max_output_tokens`); the ones it shares with chat (`temperature`, `tools[0].name`) unchanged."""
    if field in _RENAMES:
        return _RENAMES[field]
    return "text.format" if field.startswith("structured.") else field


def parse_responses(data: object) -> ResponsesRequest:
    body = Body(data)
    model = body.string("model")
    for stateful in ("previous_response_id", "conversation"):
        if body.has(stateful):
            raise InvalidRequest(stateful, NOT_STORED.format(stateful))
    instructions = body.string("instructions", None)
    chat_input = read_input(body.raw("input"), instructions)
    chat = pb.ChatMessages(messages=chat_input.messages)
    tools = read_tools(body, chat)
    tool_choice = read_tool_choice(body, chat)
    sampling = {
        name: value
        for name, value in (
            ("temperature", body.number("temperature", None)),
            ("top_p", body.number("top_p", None)),
            ("max_tokens", body.integer("max_output_tokens", None)),
        )
        if value is not None
    }
    structured, text_format = _text_format(body)
    if structured is not None:
        sampling["structured"] = structured
    prompt, params = validated(Prompt(chat=chat), sampling, lambda f: chat_input.name(f) or field_name(f))
    stream = body.boolean("stream", False)
    _stream_options(body, stream)
    user = body.string("user", None)
    parsed = ResponsesRequest(
        model=model,
        prompt=prompt,
        sampling=params,
        stream=stream,
        service_tier=body.string("service_tier", None),
        priority=body.integer("priority", None),
        user=user,
        echo=Echo(
            instructions=instructions,
            max_output_tokens=sampling.get("max_tokens"),
            temperature=sampling.get("temperature"),  # as sent: the runtime's field is a float32
            top_p=sampling.get("top_p"),
            text_format=text_format,
            tools=tools,
            tool_choice=tool_choice,
            parallel_tool_calls=chat.parallel_tool_calls if chat.HasField("parallel_tool_calls") else True,
            metadata=_metadata(body),
            user=user,
        ),
    )
    body.boolean("store", None)  # accepted either way; nothing is kept
    body.no_op("truncation", "disabled")
    body.done()
    return parsed


def _text_format(body: Body) -> tuple[pb.StructuredOutput | None, dict | None]:
    """The output's constraint from `text.format`, and the format as the response repeats it."""
    text = body.raw("text")
    if text is None:
        return None, None
    if not isinstance(text, dict):
        raise InvalidRequest("text", "Invalid type for 'text': expected an object.")
    with prefixed("text."):
        fields = Body(text)
        value = fields.raw("format")
        fields.done()
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise InvalidRequest("text.format", "Invalid type for 'text.format': expected an object.")
    kind = value.get("type")
    if kind not in TEXT_FORMATS:
        raise InvalidRequest(
            "text.format.type",
            f"Invalid value for 'text.format.type': expected one of {', '.join(TEXT_FORMATS)}, got {kind!r}.",
        )
    spec = {key: item for key, item in value.items() if key != "type"}
    if kind == "json_schema":
        return json_schema_output(spec, "text.format"), value
    with prefixed("text.format."):
        Body(spec).done()
    return (pb.StructuredOutput(json_object=True) if kind == "json_object" else None), value


def _stream_options(body: Body, stream: bool) -> None:
    options = body.raw("stream_options")
    if options is None:
        return
    if not stream:
        raise InvalidRequest("stream_options", "'stream_options' is only allowed when 'stream' is true.")
    with prefixed("stream_options."):
        fields = Body(options)
        fields.boolean("include_obfuscation", None)
        fields.done()


def _metadata(body: Body) -> dict[str, str] | None:
    """Up to 16 string pairs, as OpenAI allows; only sent back."""
    metadata = body.raw("metadata")
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise InvalidRequest("metadata", "Invalid type for 'metadata': expected an object of strings.")
    if len(metadata) > MAX_METADATA:
        raise InvalidRequest("metadata", f"Invalid 'metadata': at most {MAX_METADATA} pairs, got {len(metadata)}.")
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY or len(value) > MAX_METADATA_VALUE:
            raise InvalidRequest(
                "metadata",
                f"Invalid 'metadata': keys are at most {MAX_METADATA_KEY} characters, values {MAX_METADATA_VALUE}.",
            )
    return metadata
