"""Pipeline parallelism, the model side: which decoder layers a stage runs, its model and weights, its
forward, and the tensors it hands to the next stage.

A stage's model is the ordinary LlamaForCausalLM built with only the stage's layers, so attention,
rotary and the paged KV cache (one cache per layer the stage holds) run unchanged. Only the first
stage holds the embedding, and only the last the final norm and LM head; elsewhere they are None and
never allocated (a 70B model's embedding alone is 2 GB). Between stages flow the hidden state and the
residual stream beside it (LlamaDecoderLayer carries both), point to point.

A stage's model, split over tensor-parallel ranks or not, is built by sharded_llama.build_sharded_model.
"""

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate

import torch
import torch.distributed as dist

from shoal.runtime.layers.attention import AttentionMetadata
from shoal.runtime.model.arch_config import ModelArchConfig
from shoal.runtime.model.llama import LlamaForCausalLM
from shoal.runtime.model.loader import ModelSource, checkpoint_tensors

_LAYER_PREFIX = "model.layers."


@dataclass(frozen=True)
class StageLayout:
    """Stage `stage` of `num_stages` runs the model's decoder layers [first_layer, end_layer)."""

    stage: int
    num_stages: int
    first_layer: int
    end_layer: int

    def __post_init__(self) -> None:
        if not 0 <= self.stage < self.num_stages:
            raise ValueError(f"pipeline stage {self.stage} is not in [0, num_stages={self.num_stages})")
        if not 0 <= self.first_layer < self.end_layer:
            raise ValueError(f"stage {self.stage}: layers [{self.first_layer}, {self.end_layer}) are empty")

    @property
    def is_first(self) -> bool:
        return self.stage == 0

    @property
    def is_last(self) -> bool:
        return self.stage == self.num_stages - 1

    @property
    def num_layers(self) -> int:
        return self.end_layer - self.first_layer


def split_layers(num_layers: int, num_stages: int) -> list[StageLayout]:
    """vLLM's split (get_pp_indices, without its VLLM_PP_LAYER_PARTITION override): each stage gets
    num_layers // num_stages layers, and the remaining ones go one each to the stages before the last,
    from the last backwards. The last stage runs the LM head and the first holds the embedding, so the
    middle stages take the extra layers first and the last never does."""
    if num_stages < 1:
        raise ValueError(f"pipeline parallel size must be at least 1, got {num_stages}")
    if num_stages > num_layers:
        raise ValueError(
            f"pipeline parallel size {num_stages} exceeds the model's {num_layers} layers "
            f"(every stage needs at least one); allowed sizes: 1 to {num_layers}"
        )
    counts = [num_layers // num_stages] * num_stages
    for extra in range(num_layers % num_stages):
        counts[-2 - extra] += 1
    starts = [0, *accumulate(counts)]
    return [StageLayout(stage, num_stages, starts[stage], starts[stage + 1]) for stage in range(num_stages)]


def stage_arch(arch: ModelArchConfig, layout: StageLayout) -> ModelArchConfig:
    """The shape of the stage's model: its layers only (so its KV cache sizing counts only those).
    A split model's embedding and LM head live on different stages, so a tied LM head becomes one of
    its own on the last stage, loaded from the embedding's tensor."""
    return dataclasses.replace(
        arch,
        num_hidden_layers=layout.num_layers,
        tie_word_embeddings=arch.tie_word_embeddings and layout.is_first and layout.is_last,
    )


def stage_checkpoint_tensors(
    source: ModelSource, device: torch.device, layout: StageLayout, tie_word_embeddings: bool
) -> Iterator[tuple[str, torch.Tensor]]:
    """The stage's tensors of the full checkpoint, under the stage model's names; the other stages'
    tensors are never read."""
    return checkpoint_tensors(source, device, lambda name: stage_tensor_name(name, layout, tie_word_embeddings))


def stage_tensor_name(name: str, layout: StageLayout, tie_word_embeddings: bool) -> str | None:
    """A checkpoint (HF) tensor's name in the stage's model, None where another stage holds it.
    Names the stage does not know pass through, for load_weights to refuse."""
    if name.startswith(_LAYER_PREFIX):
        index, rest = name.removeprefix(_LAYER_PREFIX).split(".", 1)
        if not layout.first_layer <= int(index) < layout.end_layer:
            return None
        return f"{_LAYER_PREFIX}{int(index) - layout.first_layer}.{rest}"
    if name.startswith("model.embed_tokens."):
        if layout.is_first:
            return name
        tied_head = tie_word_embeddings and layout.is_last
        return name.replace("model.embed_tokens.", "lm_head.") if tied_head else None
    if name.startswith("model.norm."):
        return name if layout.is_last else None
    if name.startswith("lm_head."):
        # A tied model's head comes from the embedding (a checkpoint may store both).
        return name if layout.is_last and not tie_word_embeddings else None
    return name


@dataclass
class IntermediateTensors:
    """What a stage hands the next: the hidden state and the residual stream, [num_tokens, hidden] each."""

    hidden: torch.Tensor
    residual: torch.Tensor


def forward_stage(
    model: LlamaForCausalLM,
    layout: StageLayout,
    input_ids: torch.Tensor,
    positions: torch.Tensor,
    meta: AttentionMetadata,
    received: IntermediateTensors | None = None,
) -> torch.Tensor | IntermediateTensors:
    """The first stage starts from input_ids, the others from what the previous stage sent. The last
    returns the final hidden states (after the norm) as LlamaForCausalLM.forward does, for
    compute_logits; the others return what to send on. Branches only on the layout, never on data."""
    if layout.is_first:
        hidden, residual = model.model.embed_tokens(input_ids), None
    else:
        hidden, residual = received.hidden, received.residual
    hidden, residual = model.model.forward_layers(positions, hidden, residual, meta)
    if not layout.is_last:
        return IntermediateTensors(hidden, residual)
    hidden, _ = model.model.norm(hidden, residual)
    return hidden


def isend_intermediate(
    tensors: IntermediateTensors, dst: int, group: dist.ProcessGroup | None = None
) -> list[dist.Work]:
    """send_intermediate without waiting: the caller waits on the returned handles before it reuses
    the tensors (stage 0 starts its next micro-batch while this one is on its way)."""
    return [dist.isend(t.contiguous(), dst, group=group) for t in (tensors.hidden, tensors.residual)]


def send_intermediate(tensors: IntermediateTensors, dst: int, group: dist.ProcessGroup | None = None) -> None:
    """To the next stage's process (`dst` a global rank, as in dist.send); it posts recv_intermediate
    for the same step."""
    for work in isend_intermediate(tensors, dst, group):
        work.wait()


def recv_intermediate(
    num_tokens: int,
    hidden_size: int,
    dtype: torch.dtype,
    device: torch.device,
    src: int,
    group: dist.ProcessGroup | None = None,
) -> IntermediateTensors:
    """From the previous stage's process (`src` a global rank). No shape message comes first: every
    stage runs the same batch, so the receiver knows its number of tokens."""
    hidden = torch.empty((num_tokens, hidden_size), dtype=dtype, device=device)
    residual = torch.empty_like(hidden)
    dist.recv(hidden, src, group=group)
    dist.recv(residual, src, group=group)
    return IntermediateTensors(hidden, residual)


@dataclass(frozen=True)
class PipelineLinks:
    """Where this process sits in a pipeline and how it reaches the others. A stage is `tp_size` ranks
    (its tensor-parallel group, global ranks stage * tp_size + tp_rank); activations go from each to
    the rank of the same tp_rank in the next stage, over `forward_group`. The last stage's logits
    come back to rank 0 (which samples) from its tp_rank 0, over `return_group`, a group of their
    own so that the two directions never queue behind each other."""

    layout: StageLayout
    tp_rank: int
    tp_size: int
    vocab_size: int  # the whole model's: the logits' width (a tensor-parallel rank holds a slice)
    forward_group: dist.ProcessGroup | None  # None: the default group
    return_group: dist.ProcessGroup | None

    @property
    def previous_rank(self) -> int:
        return (self.layout.stage - 1) * self.tp_size + self.tp_rank

    @property
    def next_rank(self) -> int:
        return (self.layout.stage + 1) * self.tp_size + self.tp_rank

    @property
    def last_rank(self) -> int:
        """The rank that sends the logits: tp_rank 0 of the last stage."""
        return (self.layout.num_stages - 1) * self.tp_size

    @property
    def sends_logits(self) -> bool:
        return self.layout.is_last and self.tp_rank == 0


@dataclass(frozen=True)
class PipelineGroups:
    """A rank's place in the pipeline and the pipeline's groups, before the model's layer count is known."""

    stage: int
    num_stages: int
    tp_rank: int
    tp_size: int
    forward_group: dist.ProcessGroup | None
    return_group: dist.ProcessGroup | None

    def links(self, arch: ModelArchConfig) -> PipelineLinks:
        """The links of this rank in a pipeline of the whole model `arch`."""
        layout = split_layers(arch.num_hidden_layers, self.num_stages)[self.stage]
        groups = (self.forward_group, self.return_group)
        return PipelineLinks(layout, self.tp_rank, self.tp_size, arch.vocab_size, *groups)
