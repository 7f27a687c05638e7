"""The step runner the engine drives on rank 0 of a parallel runtime.

Each step goes to the other ranks first, then runs here on rank 0's share: its heads under tensor
parallelism (the others run the same forward pass; its collectives need them all), or the first
stage of a pipeline (the others run theirs as the activations reach them). Only rank 0 samples.
Under tensor parallelism its draws are broadcast to the other ranks, whose next step reads its
in-flight input tokens from them, as rank 0's does; a pipeline's later stages take no input tokens.

A step cannot fail on one rank alone: the others would wait in a collective that never comes, so
any error here (a step out of memory included) is the engine's end, not the step's.
"""

from typing import Any

import torch

from shoal.runtime.engine.messages import SampledToken, StepInput
from shoal.runtime.errors import NotSupportedError, ParallelWorkerError
from shoal.runtime.parallel.tensor_parallel import TensorParallel
from shoal.runtime.ranks.step_channel import RunStep, StepChannel, Stop
from shoal.runtime.worker.model_runner import LaunchedStage, LaunchedStep, ModelRunner


class RankZeroRunner:
    def __init__(self, runner: ModelRunner, channel: StepChannel, tp: TensorParallel):
        self.runner = runner
        self.channel = channel
        self.tp = tp

    def launch(self, step: StepInput) -> LaunchedStep | LaunchedStage:
        self.channel.send(RunStep(step))
        try:
            launched = self.runner.launch(step)
        except torch.OutOfMemoryError as error:
            raise ParallelWorkerError(f"rank 0 ran out of memory in a step of several ranks: {error}") from error
        if self.tp.world_size > 1 and self.runner.pipeline is None and launched.sampled is not None:
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
            "weight updates are not supported with several ranks yet (each holds a share of the weights); "
            "roll a new revision instead"
        )

    def stop_workers(self) -> None:
        self.channel.send(Stop())
