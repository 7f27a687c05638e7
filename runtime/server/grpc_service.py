"""The shoal.v1.Runtime gRPC service: requests in, token streams out, errors as gRPC status codes.

INVALID_ARGUMENT names the offending field; RESOURCE_EXHAUSTED (the waiting queue is full, or a step
running the request ran out of GPU memory, maybe after some tokens) carries a `retry-after` trailer
in seconds, as HTTP's Retry-After; UNAVAILABLE means the runtime is draining or broken. A client
that cancels its stream aborts the request (see AsyncEngine.generate).
"""

import asyncio
import logging
import uuid
from dataclasses import dataclass

import grpc

from shoal.runtime.build import ModelInfo
from shoal.runtime.engine.async_engine import AsyncEngine
from shoal.runtime.errors import EngineUnavailableError, InvalidRequestError, QueueFullError, StepOutOfMemoryError
from shoal.runtime.server.chat import ChatPrompts
from shoal.runtime.server.choices import generate_choices
from shoal.runtime.server.fault_injection import FaultInjection
from shoal.runtime.server.metrics import RuntimeMetrics
from shoal.runtime.server.proto_mapping import response_from_output, sampling_from_proto, stats_to_proto
from shoal.runtime.tokenization.tokenizer import encode_text
from shoal.runtime.tools.family import AUTO_PARSER
from shoal.runtime.tools.spec import ToolChoice
from shoal.v1 import runtime_pb2 as pb
from shoal.v1 import runtime_pb2_grpc

RETRY_AFTER_KEY = "retry-after"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    """Which pool and revision this runtime serves, as GetModelInfo reports them, how many choices
    one request may ask for, and which syntax the model writes function calls in (or `auto`)."""

    pool: str
    revision: str
    max_n: int = 1
    tool_call_parser: str = AUTO_PARSER


class RuntimeService(runtime_pb2_grpc.RuntimeServicer):
    def __init__(
        self,
        engine: AsyncEngine,
        tokenizer,
        info: ModelInfo,
        metrics: RuntimeMetrics,
        served: Served,
        faults: FaultInjection | None = None,
    ):
        self.engine = engine
        self.tokenizer = tokenizer
        self.info = info
        self.metrics = metrics
        self.served = served
        self.chat = ChatPrompts(tokenizer, served.tool_call_parser)
        self.faults = faults  # for testing only; None unless --fault-* flags are given

    async def Generate(self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext):
        if self.faults is not None and (fault := await self.faults.next_fault()) is not None:
            await self._abort(context, grpc.StatusCode.INTERNAL, fault)
        try:
            prompt_ids, tool_choice = await self._prompt(request)
            sampling = self.chat.constrained(sampling_from_proto(request.sampling), tool_choice)
            request_id = request.request_id or uuid.uuid4().hex
            n = request.n or 1
            if not 1 <= n <= self.served.max_n:
                raise InvalidRequestError("n", f"must be in [1, {self.served.max_n}] (--max-n), got {n}")
            choices = generate_choices(self.engine, request_id, prompt_ids, sampling, request.priority, n)
            tool_calls = self.chat.tool_calls(tool_choice)
            async for index, output in choices:
                response = response_from_output(output, self.tokenizer)
                response.index = index
                if tool_calls is not None:
                    tool_calls.apply(response)
                yield response
        except InvalidRequestError as error:
            await self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except (QueueFullError, StepOutOfMemoryError) as error:
            retry_after = ((RETRY_AFTER_KEY, str(error.retry_after_s)),)
            await self._abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(error), retry_after)
        except EngineUnavailableError as error:
            retry_after = () if error.retry_after_s is None else ((RETRY_AFTER_KEY, str(error.retry_after_s)),)
            await self._abort(context, grpc.StatusCode.UNAVAILABLE, str(error), retry_after)
        except Exception:  # a bug: the client gets INTERNAL, the log gets the traceback
            log.exception("Generate failed")
            await self._abort(context, grpc.StatusCode.INTERNAL, "internal error")

    async def Health(self, request: pb.HealthRequest, context) -> pb.HealthResponse:
        if not self.engine.healthy:
            message = f"the engine failed: {self.engine.failure}"
            return pb.HealthResponse(status=pb.HealthResponse.NOT_SERVING, message=message)
        if not self.engine.accepting:
            return pb.HealthResponse(status=pb.HealthResponse.NOT_SERVING, message="draining for shutdown")
        if self.engine.paused:
            message = f"paused ({self.engine.admission.mode.value}) by RuntimeAdmin"
            return pb.HealthResponse(status=pb.HealthResponse.NOT_SERVING, message=message)
        return pb.HealthResponse(status=pb.HealthResponse.SERVING)

    async def GetStats(self, request: pb.GetStatsRequest, context) -> pb.RuntimeStats:
        return stats_to_proto(self.engine.stats(), self.engine.num_waiting())

    async def GetModelInfo(self, request: pb.GetModelInfoRequest, context) -> pb.ModelInfo:
        i = self.info
        return pb.ModelInfo(
            served_model_name=i.served_model_name,
            source=i.source,
            architecture=i.architecture,
            dtype=i.dtype,
            device=i.device,
            max_model_len=i.max_model_len,
            vocab_size=i.vocab_size,
            block_size=i.block_size,
            eos_token_ids=i.eos_token_ids,
            has_tokenizer=i.has_tokenizer,
            has_chat_template=i.has_chat_template,
            pool=self.served.pool,
            revision=self.served.revision,
            kv_cache_tokens=i.kv_cache_tokens,
            weights_version=self.engine.weights_version,
        )

    async def _prompt(self, request: pb.GenerateRequest) -> tuple[list[int], ToolChoice | None]:
        """The prompt's token ids, and a chat request's tool choice."""
        kind = request.WhichOneof("prompt")
        if kind == "token_ids":
            return list(request.token_ids.ids), None
        if kind == "text":
            return await asyncio.to_thread(encode_text, self.tokenizer, request.text), None
        if kind == "chat":
            return await asyncio.to_thread(self.chat.render, request.chat)
        raise InvalidRequestError("prompt", "one of text, token_ids or chat is required")

    async def _abort(
        self, context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str, trailers: tuple = ()
    ) -> None:
        self.metrics.record_error(code.name)
        await context.abort(code, message, trailing_metadata=trailers)
