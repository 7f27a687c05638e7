"""The call to one runtime: the router's request as a GenerateRequest, and the runtime's gRPC
status codes as router errors (INVALID_ARGUMENT keeps the field it names).

A 4xx carries the runtime's own words (which field is wrong, how full its queue is). A 5xx does
not: its details come from gRPC's transport as often as from the runtime ("failed to connect to all
addresses; last error: ipv4:10.1.2.3:50051: Connection refused") and would show clients the
cluster's addresses. The dispatcher logs them, with the runtime's address, instead."""

import grpc

from shoal.router.errors import InvalidRequest, Overloaded, RouterError, Unavailable, UpstreamFailure
from shoal.router.request import InferenceRequest
from shoal.v1 import runtime_pb2 as pb

RETRY_AFTER_KEY = "retry-after"  # the runtime's trailer (shoal.runtime.server.grpc_service)


def generate_request(request: InferenceRequest, priority: int, speculate: bool = True) -> pb.GenerateRequest:
    """The runtime's request, built anew (the client's message is not touched); `speculate` False
    turns speculative decoding off for it, whatever the client asked (router/traffic/speculation.py)."""
    message = pb.GenerateRequest(request_id=request.request_id, priority=priority, n=request.n)
    message.sampling.CopyFrom(request.sampling)
    if not speculate:
        message.sampling.speculative = False
    request.prompt.to_proto(message)
    return message


RUNTIME_UNAVAILABLE = "The model server is unavailable. Please retry later."


def error_from_rpc(error: grpc.aio.AioRpcError) -> RouterError:
    routed = _error_from_rpc(error)
    routed.upstream_code = error.code().name
    return routed


def _error_from_rpc(error: grpc.aio.AioRpcError) -> RouterError:
    code, details = error.code(), error.details() or ""
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        field, _, _ = details.partition(":")
        return InvalidRequest(runtime_field_param(field.strip()), details)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        trailers = dict(error.trailing_metadata() or ())
        retry_after = trailers.get(RETRY_AFTER_KEY, "1")
        return Overloaded(
            f"The model server is overloaded: {details}", int(retry_after) if retry_after.isdigit() else 1
        )
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Unavailable(RUNTIME_UNAVAILABLE)
    return UpstreamFailure(f"The model server failed the request ({code.name}).")


def runtime_field_param(field: str) -> str | None:
    """`sampling.temperature` -> `temperature`; `sampling.structured.regex` -> `structured.regex` (the
    constraint's kind says which); `prompt...` -> `prompt`; the API layers rename further."""
    if field.startswith("sampling.structured."):
        return field.removeprefix("sampling.")
    if field.startswith("sampling."):
        return field.removeprefix("sampling.").split(".")[0].split("[")[0]
    if field.startswith("prompt"):
        return "prompt"
    return field or None
