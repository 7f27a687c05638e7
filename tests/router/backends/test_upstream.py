"""The call to a runtime: the request built for it (speculation turned off when the pool says so), and
its gRPC statuses as router errors: 4xx keep the runtime's words, 5xx never carry what gRPC said (its
transport names the runtime's address)."""

import grpc
import pytest

from shoal.router.backends.upstream import error_from_rpc, generate_request
from shoal.router.request import InferenceRequest, Prompt
from shoal.v1 import runtime_pb2 as pb

ADDRESS = "10.1.2.3:50051"
DETAILS = f"failed to connect to all addresses; last error: UNKNOWN: ipv4:{ADDRESS}: Connection refused"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 503),
        (grpc.StatusCode.INTERNAL, 500),
        (grpc.StatusCode.UNKNOWN, 500),
        (grpc.StatusCode.CANCELLED, 500),
    ],
)
def test_5xx_messages_do_not_carry_grpcs_details(code, status):
    error = error_from_rpc(grpc.aio.AioRpcError(code, None, None, details=DETAILS))
    assert error.http_status == status and error.upstream_code == code.name
    assert ADDRESS not in error.message and "ipv4" not in error.message


def test_4xx_messages_keep_the_runtimes_words():
    refused = error_from_rpc(
        grpc.aio.AioRpcError(grpc.StatusCode.INVALID_ARGUMENT, None, None, details="sampling.top_k: must be >= -1")
    )
    assert refused.http_status == 400 and refused.param == "top_k" and "must be >= -1" in refused.message


def test_a_request_turned_down_for_speculation_goes_out_without_it_and_the_clients_is_untouched():
    sampling = pb.SamplingParams(max_tokens=4, speculative=True)
    request = InferenceRequest("m", Prompt(text="hi"), sampling, tenant="t", qos="batch")
    assert generate_request(request, 1, speculate=False).sampling.speculative is False
    assert sampling.speculative is True and request.sampling is sampling
    allowed = generate_request(request, 1).sampling
    assert allowed.speculative is True and allowed.max_tokens == 4
    unset = generate_request(InferenceRequest("m", Prompt(text="hi"), pb.SamplingParams(), "t", "realtime"), 0)
    assert not unset.sampling.HasField("speculative")  # the runtime's default: it may
