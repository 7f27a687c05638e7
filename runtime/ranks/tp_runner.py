"""The step runner the engine drives under tensor parallelism, on rank 0.

Each step goes to the other ranks first (they run the same forward pass; its collectives need them
all), then runs here on rank 0's share. Only rank 0 samples; its draws are broadcast to the other
ranks, whose next step reads its in-flight input tokens from them, as rank 0's does.

A step cannot fail on one rank alone: the others would wait in a collective that never comes, so
any error here (a step out of memory included) is the engine's end, not the step's.
"""

from typing import Any

import torch

from shoal.runtime.engine.messages import SampledToken, StepInput
from shoal.runtime.errors import NotSupportedError, ParallelWorkerError
from shoal.runtime.parallel.tensor_parallel import TensorParallel
from shoal.runtime.ranks.step_channel import RunStep, StepChannel, Stop
from shoal.runtime.worker.model_runner import LaunchedStep, ModelRunner


class TensorParallelRunner:
    def __init__(self, runner: ModelRunner, channel: StepChannel, tp: TensorParallel):
        self.runner = runner
        self.channel = channel
        self.tp = tp

    def launch(self, step: StepInput) -> LaunchedStep:
        self.channel.send(RunStep(step))
        try:
            launched = self.runner.launch(step)
        except torch.OutOfMemoryError as error:
            raise ParallelWorkerError(f"rank 0 ran out of memory in a tensor-parallel step: {error}") from error
        if launched.sampled is not None:
            self.tp.broadcast_from_first(launched.sampled.token_ids)
        return launched

    def finish(self, launched: Any) -> list[SampledToken | None]:
        return self.runner.finish(launched)

    def release_cached_memory(self) -> None:
        self.runner.release_cached_memory()

    @property
    def device(self) -> torch.device:
        return self.runner.device

    def weight_targets(self) -> dict[str, torch.Tensor]:
        raise NotSupportedError(
            "weight updates are not supported under tensor parallelism yet (each rank holds a slice); "
            "roll a new revision instead"
        )

    def stop_workers(self) -> None:
        self.channel.send(Stop())
