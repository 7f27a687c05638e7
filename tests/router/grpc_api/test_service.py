"""The public gRPC API in front of a fake runtime: the same semantics and status codes as HTTP."""

import asyncio
import json

import grpc
import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shoal.router.errors import InvalidRequest
from shoal.router.grpc_api.service import _validated
from shoal.router.openai.parsing import parse_chat
from shoal.v1 import router_pb2 as rpb
from shoal.v1 import router_pb2_grpc
from shoal.v1 import runtime_pb2 as pb
from tests.router.conftest import MODEL
from tests.router.harness import RouterInThread, make_config, pool

pytestmark = pytest.mark.integration
KEY = (("authorization", "Bearer sk-test-quiet"),)


@pytest.fixture
def router(loop_thread, start_fake):
    fake = start_fake(tokens=3, text="hi")
    router = RouterInThread(loop_thread, make_config([pool("fake", {"v1": [fake]}, model="fake-model")]))
    router.fake = fake
    yield router
    router.stop()


def request(**fields) -> rpb.InferenceRequest:
    fields.setdefault("model", "fake-model")
    fields.setdefault("chat", pb.ChatMessages(messages=[pb.ChatMessage(role="user", content="Hi")]))
    return rpb.InferenceRequest(**{k: v for k, v in fields.items() if v is not None})


async def generate(target: str, message: rpb.InferenceRequest, metadata=KEY):
    async with grpc.aio.insecure_channel(target) as channel:
        call = router_pb2_grpc.InferenceStub(channel).Generate(message, metadata=metadata)
        try:
            responses = [r async for r in call]
            return responses, dict(await call.initial_metadata()), None
        except grpc.aio.AioRpcError as error:
            return None, dict(await call.trailing_metadata() or ()), error


def test_streams_text_then_finish_and_usage(router):
    responses, metadata, _ = asyncio.run(
        generate(router.grpc_target, request(qos_class=rpb.QOS_CLASS_BATCH, session_id="s1"))
    )
    assert "".join(r.text for r in responses) == "hihihi"
    assert responses[-1].finish_reason == pb.FINISH_REASON_LENGTH and responses[-1].usage.completion_tokens == 3
    assert len({r.id for r in responses}) == 1 and responses[0].model == "fake-model"
    assert metadata["x-shoal-revision"] == "v1"
    assert router.fake.counters.priorities == [1]  # batch


@pytest.mark.parametrize(
    ("message", "metadata", "code"),
    [
        (request(), (), grpc.StatusCode.UNAUTHENTICATED),
        (request(), (("authorization", "Bearer sk-wrong"),), grpc.StatusCode.UNAUTHENTICATED),
        (request(model="nope"), KEY, grpc.StatusCode.NOT_FOUND),
        (rpb.InferenceRequest(model="fake-model"), KEY, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_refusals_use_the_matching_status(router, message, metadata, code):
    _, _, error = asyncio.run(generate(router.grpc_target, message, metadata))
    assert error.code() == code


def test_runtime_errors_pass_through_with_retry_after(router):
    router.fake.error, router.fake.error_message = grpc.StatusCode.INVALID_ARGUMENT, "sampling.top_p: must be in (0, 1]"
    _, _, invalid = asyncio.run(generate(router.grpc_target, request()))
    assert invalid.code() == grpc.StatusCode.INVALID_ARGUMENT and invalid.details().startswith("sampling.top_p:")
    router.fake.error, router.fake.error_trailers = grpc.StatusCode.RESOURCE_EXHAUSTED, (("retry-after", "9"),)
    _, trailers, full = asyncio.run(generate(router.grpc_target, request()))
    assert full.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and trailers["retry-after"] == "9"


def test_list_models_and_cancel(router):
    router.fake.delay_s = 0.05

    async def main():
        async with grpc.aio.insecure_channel(router.grpc_target) as channel:
            stub = router_pb2_grpc.InferenceStub(channel)
            models = await stub.ListModels(rpb.ListModelsRequest(), metadata=KEY)
            call = stub.Generate(request(sampling=pb.SamplingParams(max_tokens=500)), metadata=KEY)
            await call.read()
            call.cancel()
            for _ in range(200):
                if router.fake.counters.in_flight == 0:
                    break
                await asyncio.sleep(0.01)
            return models

    models = asyncio.run(main())
    assert list(models.models) == ["fake-model"]
    assert router.fake.counters.cancelled == 1 and router.fake.counters.in_flight == 0


INT32 = st.integers(-(2**31), 2**31 - 1)
FLOAT32 = st.floats(width=32)  # what a proto float holds: NaN and infinities too
ROLES = st.sampled_from(["system", "developer", "user", "assistant", "tool", "robot", "", "User"])
SAMPLING = st.fixed_dictionaries(
    {},
    optional={
        "temperature": FLOAT32,
        "top_p": FLOAT32,
        "top_k": INT32,
        "min_p": FLOAT32,
        "seed": st.integers(-(2**63), 2**63 - 1),
        "repetition_penalty": FLOAT32,
        "presence_penalty": FLOAT32,
        "frequency_penalty": FLOAT32,
        "max_tokens": INT32,
        "stop": st.lists(st.text(max_size=3), max_size=6),
        "stop_token_ids": st.lists(INT32, max_size=3),
        "ignore_eos": st.booleans(),
        "skip_special_tokens": st.booleans(),
    },
)
MESSAGES = st.lists(st.tuples(ROLES, st.text(max_size=5)), max_size=3)


def refusal(parse) -> str | None:
    """The field a parse refuses, None if it accepts."""
    try:
        parse()
    except InvalidRequest as error:
        return error.param
    return None


@settings(max_examples=100, deadline=None)
@given(sampling=SAMPLING, messages=MESSAGES)
def test_grpc_refuses_exactly_what_http_refuses_naming_the_same_field(sampling, messages):
    body = {"model": "m", "messages": [{"role": r, "content": c} for r, c in messages], **sampling}
    chat = pb.ChatMessages(messages=[pb.ChatMessage(role=r, content=c) for r, c in messages])
    message = rpb.InferenceRequest(model="m", chat=chat, sampling=pb.SamplingParams(**sampling))
    http, grpc_field = refusal(lambda: parse_chat(body)), refusal(lambda: _validated(message))
    if http is None:
        assert grpc_field is None
        assert _validated(message) == (parse_chat(body).prompt, parse_chat(body).sampling)
    else:
        assert grpc_field == (f"sampling.{http}" if http in sampling else f"chat.{http}")


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (request(sampling=pb.SamplingParams(max_tokens=0)), "sampling.max_tokens"),
        (request(sampling=pb.SamplingParams(temperature=float("nan"))), "sampling.temperature"),
        (request(sampling=pb.SamplingParams(top_p=float("inf"))), "sampling.top_p"),
        (request(sampling=pb.SamplingParams(logprobs=21)), "sampling.logprobs"),
        (request(sampling=pb.SamplingParams(stop=["a", "b", "c", "d", "e"])), "sampling.stop"),
        (request(sampling=pb.SamplingParams(stop=[""])), "sampling.stop"),
        (request(sampling=pb.SamplingParams(stop_token_ids=[-1])), "sampling.stop_token_ids"),
        (request(chat=pb.ChatMessages(messages=[pb.ChatMessage(role="robot", content="x")])), "chat.messages[0].role"),
        (request(chat=pb.ChatMessages()), "chat.messages"),
        (request(chat=None, token_ids=pb.TokenIds(ids=[5, -1])), "token_ids.ids"),
        (request(chat=None, token_ids=pb.TokenIds()), "token_ids.ids"),
        (rpb.InferenceRequest(model="fake-model"), "prompt"),
    ],
)
def test_invalid_fields_are_refused_before_any_runtime_and_named(router, message, field):
    _, _, error = asyncio.run(generate(router.grpc_target, message))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith(field + ":")
    assert router.fake.counters.requests == 0
    metrics = router.loop.call(lambda: generate_latest(router.router.registry).decode())
    assert 'status="400"' in metrics and 'status="499"' not in metrics


def test_a_constraint_is_checked_as_over_http_and_passed_to_the_runtime(router):
    schema = '{"type": "object", "properties": {"a": {"type": "integer"}}}'
    good = request(sampling=pb.SamplingParams(structured=pb.StructuredOutput(json_schema=schema)))
    _, _, error = asyncio.run(generate(router.grpc_target, good))
    assert error is None and router.fake.counters.last_request.sampling.structured.json_schema == schema
    bad = request(sampling=pb.SamplingParams(structured=pb.StructuredOutput(json_schema='{"type": 5}')))
    _, _, error = asyncio.run(generate(router.grpc_target, bad))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("sampling.structured.json_schema: Invalid JSON schema")


def test_n_choices_come_tagged_with_their_index_and_are_counted_once_each(router):
    responses, _, error = asyncio.run(generate(router.grpc_target, request(n=2)))
    assert error is None and router.fake.counters.last_request.n == 2
    finals = [r for r in responses if r.finish_reason]
    assert sorted(r.index for r in finals) == [0, 1] and {r.index for r in responses} == {0, 1}
    assert "".join(r.text for r in responses if r.index == 1) == "hihihi"
    metrics = router.loop.call(lambda: generate_latest(router.router.registry).decode())
    generated = [
        s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.name == "shoal:router_generation_tokens_total"
    ]
    assert generated == [6.0]  # both choices' tokens, in one request
    _, _, error = asyncio.run(generate(router.grpc_target, request(n=-1)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("n:")


def test_tools_are_checked_as_over_http_and_passed_to_the_runtime(router):
    tools = [pb.Tool(name="get_weather", parameters='{"type": "object"}')]
    messages = [pb.ChatMessage(role="user", content="Weather?")]
    named = pb.ChatMessages(
        messages=messages, tools=tools, tool_choice=pb.TOOL_CHOICE_NAMED, tool_choice_name="get_weather"
    )
    _, _, error = asyncio.run(generate(router.grpc_target, request(chat=named)))
    assert error is None and router.fake.counters.last_request.chat == named
    unknown = pb.ChatMessages(messages=messages, tools=tools, tool_choice=pb.TOOL_CHOICE_NAMED, tool_choice_name="f")
    _, _, error = asyncio.run(generate(router.grpc_target, request(chat=unknown)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("chat.tool_choice:")


def test_calls_from_a_real_runtime_reach_a_grpc_client(stable_router):
    from tests.runtime.test_tool_calls import TOOLS, WEATHER

    chat = pb.ChatMessages(
        messages=[pb.ChatMessage(role="user", content="Weather in Paris?")],
        tools=TOOLS,
        tool_choice=pb.TOOL_CHOICE_NAMED,
        tool_choice_name="get_weather",
    )
    message = rpb.InferenceRequest(model=MODEL, chat=chat, sampling=pb.SamplingParams(temperature=0, max_tokens=60))
    responses, _, error = asyncio.run(generate(f"127.0.0.1:{stable_router.grpc_port}", message))
    assert error is None and responses[-1].finish_reason == pb.FINISH_REASON_TOOL_CALLS
    pieces = [p for r in responses for p in r.tool_calls]
    assert pieces[0].name == "get_weather" and pieces[0].id.startswith("call_")
    jsonschema.validate(json.loads("".join(p.arguments for p in pieces)), WEATHER)
