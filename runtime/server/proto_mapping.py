"""Between the gRPC messages of shoal.v1 and the engine's own types."""

from transformers import PreTrainedTokenizerBase

from shoal.runtime.engine.llm_engine import EngineStats
from shoal.runtime.engine.output_processor import RequestOutput
from shoal.runtime.engine.request import FinishReason
from shoal.runtime.errors import InvalidRequestError
from shoal.runtime.sampling.params import SamplingParams
from shoal.runtime.structured.spec import JSON_OBJECT, KINDS, StructuredOutput
from shoal.runtime.tools.spec import AUTO, NAMED, NONE, REQUIRED, Tool, ToolChoice, parameters_from_json
from shoal.v1 import runtime_pb2 as pb

_FINISH_REASONS = {
    FinishReason.STOP: pb.FINISH_REASON_STOP,
    FinishReason.LENGTH: pb.FINISH_REASON_LENGTH,
    FinishReason.ABORT: pb.FINISH_REASON_ABORT,
}
_TOOL_CHOICES = {
    pb.TOOL_CHOICE_AUTO: AUTO,
    pb.TOOL_CHOICE_NONE: NONE,
    pb.TOOL_CHOICE_REQUIRED: REQUIRED,
    pb.TOOL_CHOICE_NAMED: NAMED,
}
_OPTIONAL_SAMPLING_FIELDS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "repetition_penalty",
    "presence_penalty",
    "frequency_penalty",
    "max_tokens",
    "logprobs",
    "skip_special_tokens",
    "speculative",
)


def sampling_from_proto(message: pb.SamplingParams) -> SamplingParams:
    """Unset optional fields keep SamplingParams' defaults; raises InvalidRequestError."""
    values = {name: getattr(message, name) for name in _OPTIONAL_SAMPLING_FIELDS if message.HasField(name)}
    return SamplingParams(
        stop=tuple(message.stop),
        stop_token_ids=tuple(message.stop_token_ids),
        ignore_eos=message.ignore_eos,
        structured=structured_from_proto(message.structured) if message.HasField("structured") else None,
        **values,
    )


def structured_from_proto(message: pb.StructuredOutput) -> StructuredOutput:
    kind = message.WhichOneof("kind")
    if kind is None:
        raise InvalidRequestError("sampling.structured", f"set one of {', '.join(KINDS)}")
    if kind == JSON_OBJECT:
        if not message.json_object:
            raise InvalidRequestError("sampling.structured.json_object", "must be true when set")
        return StructuredOutput(JSON_OBJECT)
    return StructuredOutput(kind, getattr(message, kind))


def checked_chat_messages(message: pb.ChatMessages) -> list[pb.ChatMessage]:
    for index, m in enumerate(message.messages):
        if not m.role:
            raise InvalidRequestError(f"prompt.chat.messages[{index}].role", "must not be empty")
    return list(message.messages)


def tool_choice_from_proto(message: pb.ChatMessages) -> ToolChoice | None:
    """None when the request names no tools and leaves the choice at auto (the usual chat)."""
    if not message.tools and message.tool_choice == pb.TOOL_CHOICE_AUTO and not message.tool_choice_name:
        return None
    if message.tool_choice not in _TOOL_CHOICES:
        raise InvalidRequestError("prompt.chat.tool_choice", f"unknown value {message.tool_choice}")
    tools = []
    for index, tool in enumerate(message.tools):
        if not tool.name:
            raise InvalidRequestError(f"prompt.chat.tools[{index}].name", "must not be empty")
        parameters = parameters_from_json(f"prompt.chat.tools[{index}].parameters", tool.parameters)
        tools.append(Tool(tool.name, tool.description, parameters))
    return ToolChoice(
        tuple(tools),
        _TOOL_CHOICES[message.tool_choice],
        message.tool_choice_name,
        message.parallel_tool_calls if message.HasField("parallel_tool_calls") else True,
    )


def response_from_output(output: RequestOutput, tokenizer: PreTrainedTokenizerBase | None) -> pb.GenerateResponse:
    response = pb.GenerateResponse(
        request_id=output.request_id,
        token_ids=output.new_token_ids,
        text=output.new_text,
        weights_version=output.weights_version,
    )
    if output.logprobs is not None:
        for token in output.logprobs:
            response.logprobs.append(
                pb.TokenLogprob(
                    token_id=token.token_id,
                    token=_token_text(tokenizer, token.token_id),
                    logprob=token.logprob,
                    top_logprobs=[
                        pb.TopLogprob(token_id=t, token=_token_text(tokenizer, t), logprob=lp)
                        for t, lp in token.top_logprobs or ()
                    ],
                )
            )
    if output.finished:
        response.finish_reason = _FINISH_REASONS[output.finish_reason]
        if output.stop_reason is not None:
            response.stop_reason = str(output.stop_reason)
        response.usage.CopyFrom(
            pb.Usage(
                prompt_tokens=output.num_prompt_tokens,
                completion_tokens=output.num_output_tokens,
                cached_prompt_tokens=output.num_cached_tokens,
            )
        )
    return response


def stats_to_proto(stats: EngineStats, num_waiting: int) -> pb.RuntimeStats:
    return pb.RuntimeStats(
        num_requests_waiting=num_waiting,
        num_requests_running=stats.num_running,
        kv_blocks_total=stats.kv_blocks_total,
        kv_blocks_free=stats.kv_blocks_free,
        kv_blocks_cached=stats.kv_blocks_cached,
        kv_cache_usage=stats.kv_cache_usage,
        prefix_cache_hit_rate=stats.prefix_cache_hit_rate,
        num_preemptions=stats.num_preemptions,
        prefix_cache_queries=stats.prefix_cache_queries,
        prefix_cache_hits=stats.prefix_cache_hits,
    )


def _token_text(tokenizer: PreTrainedTokenizerBase | None, token_id: int) -> str:
    return tokenizer.decode([token_id]) if tokenizer is not None else ""
