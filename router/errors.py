"""Errors a request can meet in the router, each with its HTTP status, OpenAI error type/code and
gRPC status; every surface (HTTP, gRPC, WebSocket) renders them from here."""

import grpc


class RouterError(Exception):
    http_status = 500
    grpc_code = grpc.StatusCode.INTERNAL
    error_type = "server_error"
    code: str | None = None
    upstream_code: str | None = None  # the runtime's gRPC status name, when a runtime refused or failed it

    def __init__(self, message: str, *, param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = dict(headers or {})

    @property
    def counts_as_upstream_error(self) -> bool:
        """Whether it is the backend's fault (5xx), for error rates and rollback rules."""
        return self.http_status >= 500

    def body(self) -> dict:
        """OpenAI's error shape."""
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}}


class InvalidRequest(RouterError):
    http_status = 400
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    error_type = "invalid_request_error"

    def __init__(self, param: str | None, message: str, code: str | None = None):
        super().__init__(message, param=param)
        self.code = code


class RequestTimeout(RouterError):
    http_status = 408
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    error_type = "invalid_request_error"
    code = "request_timeout"


class Unauthenticated(RouterError):
    http_status = 401
    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    error_type = "invalid_request_error"  # what OpenAI sends with 401
    code = "invalid_api_key"


class NotFound(RouterError):
    http_status = 404
    grpc_code = grpc.StatusCode.NOT_FOUND
    error_type = "invalid_request_error"


class ModelNotFound(NotFound):
    code = "model_not_found"

    def __init__(self, model: str):
        super().__init__(f"The model `{model}` does not exist or you do not have access to it.", param="model")


class RateLimitExceeded(RouterError):
    """A tenant's own limit (concurrency or tokens); headers carry x-ratelimit-* and retry-after."""

    http_status = 429
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    code = "rate_limit_exceeded"

    def __init__(self, message: str, limit: str, retry_after_s: float, headers: dict[str, str]):
        super().__init__(message, headers={**headers, "retry-after": str(max(1, round(retry_after_s + 0.499)))})
        self.error_type = limit  # OpenAI's type here is the limit hit: "requests" or "tokens"


class Overloaded(RouterError):
    """Shed by QoS admission or refused by a full runtime queue; retry later."""

    http_status = 429
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    error_type = "server_overloaded"
    code = "overloaded"

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message, headers={"retry-after": str(max(1, int(retry_after_s)))})


class Unavailable(RouterError):
    http_status = 503
    grpc_code = grpc.StatusCode.UNAVAILABLE
    error_type = "service_unavailable"
    code = "service_unavailable"


class UpstreamFailure(RouterError):
    """A runtime failed the request (INTERNAL and the like)."""
