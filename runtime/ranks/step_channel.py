"""What rank 0 tells the other ranks of a parallel runtime, and how: one typed command per step, put
on each worker's own queue (a multiprocessing queue: pickled by a feeder thread, so sending never
waits for a worker still busy with the step before, as a pipeline's later stages are). The tensors
a step's run makes travel over the model's process group, NCCL on GPUs."""

import multiprocessing
from dataclasses import dataclass, replace
from queue import Empty

from shoal.runtime.engine.messages import StepInput

PARENT_CHECK_S = 1.0  # how often a waiting worker checks that rank 0 is still there


@dataclass(frozen=True)
class RunStep:
    step: StepInput  # without its token bitmask: only rank 0 samples


@dataclass(frozen=True)
class Stop:
    pass


WorkerCommand = RunStep | Stop


class RankZeroGone(RuntimeError):
    """A worker's rank 0 exited: nobody will send it another step."""


class StepChannel:
    """Rank 0's end: a queue per worker rank (made before the workers start, handed to each)."""

    def __init__(self, queues: list[multiprocessing.Queue]):
        self.queues = queues

    def send(self, command: WorkerCommand) -> None:
        if isinstance(command, RunStep) and command.step.token_bitmask is not None:
            command = RunStep(replace(command.step, token_bitmask=None))
        for queue in self.queues:
            queue.put(command)


def receive(queue: multiprocessing.Queue) -> WorkerCommand:
    """A worker's next command; raises RankZeroGone once rank 0 has exited."""
    parent = multiprocessing.parent_process()
    while True:
        try:
            command = queue.get(timeout=PARENT_CHECK_S)
        except Empty:
            if parent is not None and not parent.is_alive():
                raise RankZeroGone("rank 0 exited") from None
            continue
        if not isinstance(command, RunStep | Stop):
            raise TypeError(f"rank 0 sent {type(command).__name__}, not a worker command")
        return command
