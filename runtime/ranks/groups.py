"""Joining the ranks of a parallel runtime: the model's process group (NCCL on GPUs, gloo on a CPU),
and under pipeline parallelism a group for the logits the last stage returns to stage 0."""

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from shoal.runtime.parallel.pipeline_stage import PipelineGroups
from shoal.runtime.parallel.tensor_parallel import TensorParallel

# The model's collectives: every rank reaches each one within a step, or within the start (a rank
# loading its weights more slowly than the others).
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class ParallelGroups:
    tp: TensorParallel
    pipeline: PipelineGroups | None


def uses_cuda(device: str) -> bool:
    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


def join(rank: int, world_size: int, rendezvous: str, device: str, pipeline_size: int) -> ParallelGroups:
    """Called by every rank; returns once all have joined. The ranks are `pipeline_size` stages of
    world_size / pipeline_size tensor-parallel ranks each (global rank = stage * tp + tp_rank). On a
    CPU each rank takes its share of the cores: ranks that each took all of them would slow one
    another down."""
    if uses_cuda(device):
        torch.cuda.set_device(rank)
        backend = "nccl"
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
        backend = "gloo"
    dist.init_process_group(
        backend, init_method=rendezvous, rank=rank, world_size=world_size, timeout=COLLECTIVE_TIMEOUT
    )
    if pipeline_size == 1:
        return ParallelGroups(TensorParallel(rank, world_size), None)
    tp_size = world_size // pipeline_size
    stage, tp_rank = divmod(rank, tp_size)
    stage_group = None
    for s in range(pipeline_size):  # every rank takes part in making every group
        group = dist.new_group(list(range(s * tp_size, (s + 1) * tp_size)), timeout=COLLECTIVE_TIMEOUT)
        if s == stage:
            stage_group = group
    returns = dist.new_group(backend=backend, timeout=COLLECTIVE_TIMEOUT)
    pipeline = PipelineGroups(stage, pipeline_size, tp_rank, tp_size, None, returns)
    return ParallelGroups(TensorParallel(tp_rank, tp_size, stage_group), pipeline)


def leave() -> None:
    """Ends this process's part in the groups, so that another runtime (a test's next one) may form
    new ones. Not after NCCL: destroying a communicator whose collectives were captured in CUDA
    graphs hangs (pytorch/pytorch#115388), and a GPU rank's process ends with its runtime anyway."""
    if dist.is_initialized() and dist.get_backend() != "nccl":
        dist.destroy_process_group()
