"""Where a model comes from, and putting its weights into our LlamaForCausalLM.

Three sources: the embedded GGUF default (or any GGUF file, converted once to an HF directory), a
local HF directory with safetensors, and an HF config with random weights (`--load-format dummy`,
for benchmarks at scale).
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from transformers import AutoConfig, PretrainedConfig

from shoal.embedded_model import EMBEDDED_MODEL_NAME, embedded_gguf_path
from shoal.runtime.config import LOAD_FORMATS
from shoal.runtime.layers.ops import Kernels
from shoal.runtime.model.arch_config import ModelArchConfig
from shoal.runtime.model.gguf_conversion import converted_gguf_dir
from shoal.runtime.model.llama import LlamaForCausalLM
from shoal.runtime.model.placement import Placement


@dataclass(frozen=True)
class ModelSource:
    kind: str  # "gguf" | "safetensors" | "dummy"
    directory: Path
    gguf_file: str | None = None
    name: str = ""
    origin: str = ""  # what the user named, for reports

    def describe(self) -> str:
        return self.origin or f"{self.kind}:{self.directory}"


def resolve_model_source(model: str, load_format: str = "auto") -> ModelSource:
    """`default` (the embedded model), a .gguf file, or a directory with config.json."""
    if load_format not in LOAD_FORMATS:
        raise ValueError(f"--load-format must be one of {LOAD_FORMATS}, got {load_format!r}")
    if model == "default":
        gguf = embedded_gguf_path()
        return ModelSource("gguf", gguf.parent, gguf.name, EMBEDDED_MODEL_NAME, f"gguf:{gguf}")
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource("gguf", path.parent, path.name, path.stem, f"gguf:{path}")
    if not path.is_dir():
        raise ValueError(f"--model {model!r}: not 'default', a .gguf file, or a model directory")
    ggufs = sorted(p.name for p in path.glob("*.gguf"))
    has_config = (path / "config.json").is_file()
    if load_format == "gguf" or (load_format == "auto" and ggufs and not has_config):
        if len(ggufs) != 1:
            raise ValueError(f"--model {model!r}: expected one .gguf file, found {ggufs or 'none'}")
        return ModelSource("gguf", path, ggufs[0], path.name, f"gguf:{path / ggufs[0]}")
    if not has_config:
        raise ValueError(f"--model {model!r}: the directory has no config.json")
    if load_format == "dummy":
        return ModelSource("dummy", path, None, path.name)
    if not any(path.glob("*.safetensors")):
        raise ValueError(f"--model {model!r}: no *.safetensors weights (use --load-format dummy for random weights)")
    return ModelSource("safetensors", path, None, path.name)


def materialize(source: ModelSource) -> ModelSource:
    """A source whose directory holds config, tokenizer and weights as HF lays them out."""
    if source.kind != "gguf":
        return source
    directory = converted_gguf_dir(source.directory / source.gguf_file)
    return ModelSource("safetensors", directory, None, source.name, source.describe())


def load_hf_config(source: ModelSource) -> PretrainedConfig:
    return AutoConfig.from_pretrained(str(source.directory))


def build_model(
    arch: ModelArchConfig, source: ModelSource, kernels: Kernels, placement: Placement, max_position: int, seed: int = 0
) -> LlamaForCausalLM:
    with default_dtype(placement.dtype), torch.device(placement.device), SkipDefaultInit():
        model = LlamaForCausalLM(arch, kernels.attention, kernels.ops, max_position)
    if source.kind == "dummy":
        init_random(model, seed)
    else:
        model.load_weights(checkpoint_tensors(source, placement.device))
    return model.eval()


def checkpoint_tensors(
    source: ModelSource, device: torch.device, rename: Callable[[str], str | None] | None = None
) -> Iterator[tuple[str, torch.Tensor]]:
    """Each tensor as the checkpoint holds it, on the device: copying it into its parameter casts it
    in the same pass, where a cast here would copy every tensor of another dtype once more. `rename`
    gives a tensor's name in the model, None to leave it unread (safetensors reads a tensor only when
    asked for it: a pipeline stage never loads the others' tensors)."""
    from safetensors import safe_open

    for file in sorted(source.directory.glob("*.safetensors")):
        with safe_open(str(file), framework="pt", device=str(device)) as f:
            for name in f.keys():
                target = name if rename is None else rename(name)
                if target is not None:
                    yield target, f.get_tensor(name)


class SkipDefaultInit(TorchFunctionMode):
    """Leaves parameters as allocated while the model is built. nn.Linear and nn.Embedding fill their
    weights with random values as they are made, a pass over every parameter that the checkpoint or
    init_random overwrites next; on a CPU that pass was nearly all of building the model (0.63 of
    0.66 s for SmolLM2-135M). Every parameter is written afterwards: load_weights refuses a checkpoint
    that misses one, and init_random covers them all."""

    SKIPPED = frozenset({nn.init.kaiming_uniform_, nn.init.uniform_, nn.init.normal_})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.SKIPPED:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **(kwargs or {}))


@torch.no_grad()
def init_random(model: LlamaForCausalLM, seed: int) -> None:
    """Weights like a freshly initialised HF model (normal, std 0.02; norms at 1): throughput does not
    depend on their values, but they keep activations in a realistic range."""
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    for name, param in model.named_parameters():
        if name.endswith("norm.weight"):
            param.fill_(1.0)
        elif name.endswith(".bias"):
            param.zero_()
        else:
            param.normal_(0.0, 0.02, generator=generator)


@contextmanager
def default_dtype(dtype: torch.dtype):
    """Parameters are created in the serving dtype directly, never in float32 first."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
