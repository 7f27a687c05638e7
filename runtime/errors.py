"""Errors a request can meet, each mapped to one gRPC status by the server."""


class InvalidRequestError(ValueError):
    """A request field is out of range or inconsistent (gRPC INVALID_ARGUMENT); names the field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


class QueueFullError(RuntimeError):
    """The waiting queue is full (gRPC RESOURCE_EXHAUSTED); the client should retry after a while."""

    def __init__(self, num_waiting: int, retry_after_s: int):
        super().__init__(f"the waiting queue is full ({num_waiting} requests); retry after {retry_after_s}s")
        self.retry_after_s = retry_after_s


class StepOutOfMemoryError(RuntimeError):
    """The engine step running this request ran out of GPU memory and failed every request in it
    (gRPC RESOURCE_EXHAUSTED). Retrying is safe: the request's KV blocks are already free, and the
    next steps run other batches."""

    retry_after_s = 1

    def __init__(self) -> None:
        super().__init__(
            f"the engine step running this request ran out of GPU memory; retry after {self.retry_after_s}s"
        )


class EngineUnavailableError(RuntimeError):
    """The engine is draining for shutdown, paused, or has failed (gRPC UNAVAILABLE); a pause says
    when to retry."""

    def __init__(self, message: str, retry_after_s: int | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotPausedError(RuntimeError):
    """A weight update needs the engine paused first (gRPC FAILED_PRECONDITION)."""


class PartialUpdateError(RuntimeError):
    """A weight update failed after it had written some tensors (gRPC ABORTED): the model holds a mix
    of old and new weights, called `version`, until an update completes."""

    def __init__(self, version: str, cause: Exception):
        super().__init__(f"the update stopped half way ({cause}); the weights are now {version!r}: retry it")
        self.version = version


class ParallelWorkerError(RuntimeError):
    """A rank of a tensor-parallel runtime failed or exited: the ranks can no longer run a step
    together, so the runtime stops serving (health NOT_SERVING, /health 503) and exits to be
    restarted."""


class NotSupportedError(RuntimeError):
    """What was asked is not offered in this runtime's configuration (gRPC UNIMPLEMENTED)."""
