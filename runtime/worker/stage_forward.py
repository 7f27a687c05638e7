"""A step's forward pass split into pipeline stages (runtime/parallel/pipeline_stage.py): stage 0 runs
the batch's first layers and hands the activations on without waiting; each later stage receives
them, runs its own layers and hands them on; the last computes the logits of the rows that sample
and returns them to stage 0, which samples (it holds the requests' generators and grammars) when
the engine reads the step: by then it has launched its next micro-batch, so the stages overlap.
Every stage builds the same batch from the same StepInput, so nothing but tensors crosses."""

import torch
import torch.distributed as dist

from shoal.runtime.model.llama import LlamaForCausalLM
from shoal.runtime.parallel.pipeline_stage import (
    IntermediateTensors,
    PipelineLinks,
    forward_stage,
    isend_intermediate,
    recv_intermediate,
    send_intermediate,
)
from shoal.runtime.worker.batch_inputs import BatchInputs


def run_first_stage(
    model: LlamaForCausalLM,
    links: PipelineLinks,
    batch: BatchInputs,
    in_flight: tuple[torch.Tensor, torch.Tensor] | None,
    device: torch.device,
) -> list[dist.Work]:
    """Stage 0's layers, their output on its way to stage 1 (wait on the handles before reading the
    step's logits): stage 0 may start its next micro-batch meanwhile."""
    input_ids, positions, meta = batch.to_device(device)
    if in_flight is not None:
        input_ids.index_copy_(0, *in_flight)
    sent = forward_stage(model, links.layout, input_ids, positions, meta)
    return isend_intermediate(sent, links.next_rank, links.forward_group)


def receive_logits(links: PipelineLinks, num_rows: int, device: torch.device) -> torch.Tensor:
    """The logits of a step's sampling rows, from the last stage, in the order the steps were run."""
    logits = torch.empty((num_rows, links.vocab_size), dtype=torch.float32, device=device)
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
    logits = model.compute_logits(batch.sampling_rows(out))  # every tensor-parallel rank of the stage takes part
    if links.sends_logits:
        dist.send(logits.contiguous(), 0, group=links.return_group)
