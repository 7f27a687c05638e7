"""New weights into a serving model, in place, one tensor at a time.

An update names checkpoint (HF) tensors with their shapes and dtypes; every one is checked against
the model's layout before the first is written, so a bad update changes nothing. Then each tensor
is read (from a safetensors file, from bytes sent over gRPC, or from a torch.distributed broadcast)
into a buffer of its own size and copied into the parameter it belongs to: the extra memory is
one tensor, never a second model. Parameters keep their storage, so the CUDA graphs captured over
them stay valid. An update may cover any subset of the model's tensors.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from shoal.runtime.errors import InvalidRequestError

DTYPES = {
    name: getattr(torch, name) for name in ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int8")
}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def num_bytes(self) -> int:
        return self.dtype.itemsize * _numel(self.shape)


Receive = Callable[["TensorSpec", torch.device], torch.Tensor]


def dtype_named(field: str, name: str) -> torch.dtype:
    if name not in DTYPES:
        raise InvalidRequestError(field, f"unknown dtype {name!r}; one of {', '.join(DTYPES)}")
    return DTYPES[name]


def check_update(targets: dict[str, torch.Tensor], specs: list[TensorSpec], field: str, exact_dtype: bool) -> None:
    """Refuses (InvalidRequestError naming the tensor) a tensor the model has no place for, of
    another shape, or of a dtype it cannot take: with `exact_dtype`, anything but the served dtype
    (bytes and broadcasts are read as what the model holds); else any non-floating dtype."""
    if not specs:
        raise InvalidRequestError(field, "names no tensors")
    seen = set()
    for spec in specs:
        tensor = f"tensor {spec.name!r}"
        if spec.name in seen:
            raise InvalidRequestError(field, f"{tensor} is given twice")
        seen.add(spec.name)
        target = targets.get(spec.name)
        if target is None:
            raise InvalidRequestError(field, f"{tensor} has no place in this model")
        if tuple(target.shape) != spec.shape:
            raise InvalidRequestError(field, f"{tensor}: expected shape {tuple(target.shape)}, got {spec.shape}")
        if exact_dtype and spec.dtype != target.dtype:
            raise InvalidRequestError(
                field, f"{tensor}: expected dtype {_name(target.dtype)} (the served dtype), got {_name(spec.dtype)}"
            )
        if not spec.dtype.is_floating_point:
            raise InvalidRequestError(field, f"{tensor}: dtype {_name(spec.dtype)} is not a floating-point type")


def safetensors_specs(directory: Path) -> list[tuple[Path, TensorSpec]]:
    """The tensors of a directory's *.safetensors files, from their headers (no data is read)."""
    from safetensors import safe_open

    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise InvalidRequestError("path", f"{str(directory)!r} holds no *.safetensors files")
    found = []
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():
                piece = f.get_slice(name)
                dtype = _SAFETENSORS_DTYPES.get(piece.get_dtype())
                if dtype is None:
                    raise InvalidRequestError("path", f"tensor {name!r} has dtype {piece.get_dtype()}, not a torch one")
                found.append((file, TensorSpec(name, tuple(piece.get_shape()), dtype)))
    return found


@torch.no_grad()
def copy_from_safetensors(targets: dict[str, torch.Tensor], tensors: list[tuple[Path, TensorSpec]]) -> None:
    """Each file is opened for one tensor at a time: its mapped pages are let go after each copy."""
    from safetensors import safe_open

    for file, spec in tensors:
        target = targets[spec.name]
        with safe_open(str(file), framework="pt", device=str(target.device)) as f:
            target.copy_(f.get_tensor(spec.name))


@torch.no_grad()
def copy_from_bytes(targets: dict[str, torch.Tensor], specs: list[TensorSpec], chunks: Iterator[bytes]) -> None:
    """The tensors' bytes, in spec order, cut into chunks anywhere; raises InvalidRequestError if
    they are too few or too many."""
    reader = _ByteReader(chunks)
    for spec in specs:
        data = reader.take(spec.num_bytes)
        if data is None:
            raise InvalidRequestError("data", f"the bytes ended inside tensor {spec.name!r}")
        if data:
            targets[spec.name].copy_(torch.frombuffer(data, dtype=spec.dtype).view(spec.shape))
    if reader.has_more():
        raise InvalidRequestError("data", "more bytes than the manifest's tensors hold")


@torch.no_grad()
def copy_from_broadcast(targets: dict[str, torch.Tensor], specs: list[TensorSpec], receive: Receive) -> None:
    """`receive(spec, device)` is a buffer holding the tensor from the trainer (a torch.distributed
    broadcast from rank 0); it lives until its copy is done."""
    for spec in specs:
        target = targets[spec.name]
        target.copy_(receive(spec, target.device))


class _ByteReader:
    def __init__(self, chunks: Iterator[bytes]):
        self.chunks = chunks
        self.pending = bytearray()

    def take(self, num_bytes: int) -> bytearray | None:
        while len(self.pending) < num_bytes:
            chunk = next(self.chunks, None)
            if chunk is None:
                return None
            self.pending += chunk
        taken = self.pending[:num_bytes]
        del self.pending[:num_bytes]
        return taken

    def has_more(self) -> bool:
        if self.pending:
            return True
        chunk = next(self.chunks, None)
        return chunk is not None and len(chunk) > 0


_SAFETENSORS_DTYPES = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F64": torch.float64,
    "I64": torch.int64,
    "I32": torch.int32,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
