"""A step's forward pass split into pipeline stages (runtime/parallel/pipeline_stage.py): stage 0 runs
the batch's first layers and hands the activations on; each later stage receives them, runs its own
layers and hands them on; the last computes the logits of the rows that sample and returns them to
stage 0, which samples (it holds the requests' generators and grammars). Every stage builds the
same batch from the same StepInput, so nothing but tensors crosses between them."""

import torch
import torch.distributed as dist

from shoal.runtime.model.llama import LlamaForCausalLM
from shoal.runtime.parallel.pipeline_stage import (
    IntermediateTensors,
    PipelineLinks,
    forward_stage,
    recv_intermediate,
    send_intermediate,
)
from shoal.runtime.sampling.metadata import to_device
from shoal.runtime.worker.batch_inputs import BatchInputs


def first_stage_logits(
    model: LlamaForCausalLM,
    links: PipelineLinks,
    batch: BatchInputs,
    in_flight: tuple[torch.Tensor, torch.Tensor] | None,
    device: torch.device,
) -> torch.Tensor | None:
    """Stage 0's part, then the logits of the batch's sampling rows, once the last stage sends them
    (None when no row samples)."""
    input_ids, positions, meta = batch.to_device(device)
    if in_flight is not None:
        input_ids.index_copy_(0, *in_flight)
    sent = forward_stage(model, links.layout, input_ids, positions, meta)
    send_intermediate(sent, links.next_rank, links.forward_group)
    if not batch.sample_slots:
        return None
    logits = torch.empty((len(batch.sample_slots), model.arch.vocab_size), dtype=torch.float32, device=device)
    dist.recv(logits, links.last_rank, group=links.return_group)
    return logits


def later_stage(model: LlamaForCausalLM, links: PipelineLinks, batch: BatchInputs, device: torch.device) -> None:
    """A stage after the first: its layers over what the previous stage sent; the last one's logits
    of the sampling rows go back to stage 0."""
    input_ids, positions, meta = batch.to_device(device)
    hidden_size = model.arch.hidden_size
    dtype = next(model.parameters()).dtype
    received = recv_intermediate(batch.num_tokens, hidden_size, dtype, device, links.previous_rank, links.forward_group)
    out = forward_stage(model, links.layout, input_ids, positions, meta, received)
    if isinstance(out, IntermediateTensors):
        send_intermediate(out, links.next_rank, links.forward_group)
        return
    if not batch.sample_slots:
        return
    rows = batch.sample_token_indices
    if len(rows) != batch.num_tokens:
        out = out[to_device(rows, torch.int64, device)]
    dist.send(model.compute_logits(out).contiguous(), 0, group=links.return_group)
