"""Where new weights come from, each as work for the paused engine's thread (AsyncEngine.run_paused):
safetensors files on this machine, bytes sent over gRPC, or a torch.distributed broadcast from a
trainer. Every update is checked whole before the first tensor is written (model/weight_update.py),
and resets the prefix cache unless asked not to: cached K/V belong to the weights that computed it.
"""

import datetime
import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from shoal.runtime.engine.llm_engine import LLMEngine
from shoal.runtime.errors import InvalidRequestError, PartialUpdateError
from shoal.runtime.model.weight_update import (
    TensorSpec,
    check_update,
    copy_from_broadcast,
    copy_from_bytes,
    copy_from_safetensors,
    dtype_named,
    safetensors_specs,
)
from shoal.v1 import runtime_admin_pb2 as apb

GROUP_TIMEOUT = datetime.timedelta(minutes=10)
_END = object()


@dataclass(frozen=True)
class Update:
    version: str
    reset_prefix_cache: bool = True


def manifest_specs(manifest: apb.WeightsManifest) -> list[TensorSpec]:
    return [
        TensorSpec(t.name, tuple(t.shape), dtype_named(f"manifest.tensors[{i}].dtype", t.dtype))
        for i, t in enumerate(manifest.tensors)
    ]


def from_path(directory: str, update: Update) -> Callable[[LLMEngine], None]:
    path = Path(directory)
    if not path.is_dir():
        raise InvalidRequestError("path", f"{directory!r} is not a directory on the runtime")

    def run(engine: LLMEngine) -> None:
        targets = engine.runner.weight_targets()
        found = safetensors_specs(path)
        check_update(targets, [spec for _, spec in found], "path", exact_dtype=False)
        _written(update, lambda: copy_from_safetensors(targets, found), engine)

    return run


def checked(specs: list[TensorSpec], field: str) -> Callable[[LLMEngine], None]:
    """Only the check: a streamed update is refused before its bytes are taken."""
    return lambda engine: check_update(engine.runner.weight_targets(), specs, field, exact_dtype=True)


def from_bytes(specs: list[TensorSpec], chunks: "ChunkFeed", update: Update) -> Callable[[LLMEngine], None]:
    def run(engine: LLMEngine) -> None:
        targets = engine.runner.weight_targets()
        _written(update, lambda: copy_from_bytes(targets, specs, chunks.read()), engine)

    return run


def from_broadcast(specs: list[TensorSpec], group: "WeightGroup", update: Update) -> Callable[[LLMEngine], None]:
    def run(engine: LLMEngine) -> None:
        targets = engine.runner.weight_targets()
        check_update(targets, specs, "manifest", exact_dtype=True)
        _written(update, lambda: copy_from_broadcast(targets, specs, group.receive), engine)

    return run


def _written(update: Update, write: Callable[[], None], engine: LLMEngine) -> None:
    try:
        write()
    except Exception as error:
        raise PartialUpdateError(f"{update.version}+partial", error) from error
    if update.reset_prefix_cache:
        engine.reset_prefix_cache()


class ChunkFeed:
    """Bytes from the event loop (a gRPC stream) to the engine thread, which blocks on them."""

    def __init__(self):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()

    def put(self, data: bytes) -> None:
        self._queue.put(data)

    def end(self, error: Exception | None = None) -> None:
        self._queue.put(error if error is not None else _END)

    def read(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, Exception):
                raise item
            yield item


class WeightGroup:
    """This runtime's side of a torch.distributed group with a trainer (rank 0), made without the
    global default group, which the runtime's own parallelism may use."""

    def __init__(self, request: apb.InitWeightGroupRequest, device: torch.device):
        import torch.distributed as dist

        if request.backend not in ("gloo", "nccl"):
            raise InvalidRequestError("backend", f"must be gloo or nccl, got {request.backend!r}")
        if request.world_size < 2 or not 1 <= request.rank < request.world_size:
            raise InvalidRequestError("rank", f"needs 1 <= rank < world_size (>= 2), got {request.rank}")
        if request.backend == "nccl" and device.type != "cuda":
            raise InvalidRequestError("backend", "nccl needs the runtime on a GPU; use gloo on CPU")
        store = dist.TCPStore(
            request.master_address, request.master_port, request.world_size, is_master=False, timeout=GROUP_TIMEOUT
        )
        if request.backend == "gloo":
            self.group = dist.ProcessGroupGloo(store, request.rank, request.world_size, GROUP_TIMEOUT)
        else:
            self.group = dist.ProcessGroupNCCL(store, request.rank, request.world_size)
        self.backend = request.backend
        self._options = dist.BroadcastOptions()
        self._options.rootRank = 0

    def receive(self, spec: TensorSpec, device: torch.device) -> torch.Tensor:
        """The next tensor broadcast by the trainer; gloo carries host tensors only."""
        on = device if self.backend == "nccl" else torch.device("cpu")
        buffer = torch.empty(spec.shape, dtype=spec.dtype, device=on)
        self.group.broadcast([buffer], self._options).wait()
        if self.backend == "nccl":
            torch.cuda.current_stream(device).synchronize()
        return buffer
