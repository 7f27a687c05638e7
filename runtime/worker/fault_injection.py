"""For testing only: a worker that runs out of GPU memory on purpose (`--fault-oom-above-tokens`).

A step that batches more tokens than the limit raises torch.OutOfMemoryError before it touches the
device, as a GPU short of activation memory does on a large prefill. The engine takes it as it takes
a real one: it fails that step's requests and counts them (shoal:oom_errors_total). A canary started
with the flag plays a revision that runs out of memory, on a CPU.
"""

from dataclasses import dataclass

import torch

from shoal.runtime.engine.messages import StepInput


@dataclass(frozen=True)
class StepMemoryLimit:
    max_tokens: int

    def check(self, step: StepInput) -> None:
        tokens = sum(row.num_new_tokens for row in step.rows)
        if tokens > self.max_tokens:
            raise torch.OutOfMemoryError(
                f"injected: a step of {tokens} tokens (--fault-oom-above-tokens {self.max_tokens}, for testing only)"
            )
