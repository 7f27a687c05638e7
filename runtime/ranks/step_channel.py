"""What rank 0 tells the other ranks of a tensor-parallel runtime, and how: one typed command per
step, broadcast over a gloo group on the host (a step is a few kilobytes of Python data; the
tensors its run makes travel over the model's own group, NCCL on GPUs)."""

from dataclasses import dataclass, replace

import torch.distributed as dist

from shoal.runtime.engine.messages import StepInput


@dataclass(frozen=True)
class RunStep:
    step: StepInput  # without its token bitmask: only rank 0 samples


@dataclass(frozen=True)
class Stop:
    pass


WorkerCommand = RunStep | Stop


class StepChannel:
    def __init__(self, group: dist.ProcessGroup | None):
        self.group = group  # a gloo group of every rank; None: the default group (gloo on a CPU)

    def send(self, command: WorkerCommand) -> None:
        """From rank 0; returns once every rank has it."""
        if isinstance(command, RunStep) and command.step.token_bitmask is not None:
            command = RunStep(replace(command.step, token_bitmask=None))
        dist.broadcast_object_list([command], src=0, group=self.group)

    def receive(self) -> WorkerCommand:
        """On the other ranks: the next command rank 0 sends."""
        box: list[WorkerCommand | None] = [None]
        dist.broadcast_object_list(box, src=0, group=self.group)
        command = box[0]
        if not isinstance(command, RunStep | Stop):
            raise TypeError(f"rank 0 sent {type(command).__name__}, not a worker command")
        return command
