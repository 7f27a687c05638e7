"""Tensors in, tokens out: runs the model over the paged KV cache for one scheduled batch, and samples.

Each scheduled request contributes its next `num_new_tokens` tokens (batch_inputs.py flattens them:
no padding, one token batch plus per-sequence metadata); a request whose step reaches the end of
its known tokens (a decode, or the last chunk of a prompt) gets a token sampled from the logits of
its last position. Decode-only batches replay CUDA graphs where they were captured.

`launch` only queues the work: the draws stay on the device, and a decode in the next step reads
its input token from them there, so the host can schedule and launch step N+1 while the device
still runs step N (async scheduling). `finish` waits for a step's draws.
"""

from dataclasses import dataclass

import torch

from shoal.runtime.engine.scheduler import SchedulerOutput
from shoal.runtime.model.batch_inputs import BatchInputs, build_batch
from shoal.runtime.model.cuda_graphs import DecodeGraphs
from shoal.runtime.model.llama import LlamaForCausalLM
from shoal.runtime.sampling.sampler import SampledBatch, SampledToken, Sampler, to_device


@dataclass
class LaunchedStep:
    num_scheduled: int
    sample_slots: list[int]  # index into the scheduled list of each draw
    sampled: SampledBatch | None


class ModelRunner:
    def __init__(
        self,
        model: LlamaForCausalLM,
        sampler: Sampler,
        num_blocks: int,
        block_size: int,
        dtype: torch.dtype,
        device: torch.device,
    ):
        self.model = model
        self.sampler = sampler
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.device = device
        self.decode_graphs: DecodeGraphs | None = None
        self.kv_caches = model.allocate_kv_caches(num_blocks, block_size, dtype, device)
        # The last launched step's draws, by request: where in-flight input tokens come from.
        self._last_draws: torch.Tensor | None = None
        self._last_draw_rows: dict[str, int] = {}

    def capture_decode_graphs(self, max_batch_size: int, max_seq_len: int) -> None:
        graphs = DecodeGraphs(self.model, max_batch_size, max_seq_len, self.block_size, self.device)
        graphs.capture()
        self.decode_graphs = graphs

    def execute(self, output: SchedulerOutput) -> list[SampledToken | None]:
        """One step, waited for: a token for each request that completed its known tokens, None for
        a prompt chunk that did not."""
        return self.finish(self.launch(output))

    @torch.inference_mode()
    def launch(self, output: SchedulerOutput) -> LaunchedStep:
        batch = build_batch(output, self.block_size)
        in_flight = self._in_flight_inputs(batch)
        if self.decode_graphs is not None and self.decode_graphs.fits(batch):
            hidden = self.decode_graphs.run(batch, in_flight)
        else:
            input_ids, positions, meta = batch.to_device(self.device)
            if in_flight is not None:
                input_ids.index_copy_(0, *in_flight)
            hidden = self.model(input_ids, positions, meta)
        self._last_draws, self._last_draw_rows = None, {}
        if not batch.sample_requests:
            return LaunchedStep(len(output.scheduled), [], None)
        rows = batch.sample_token_indices
        if len(rows) != batch.num_tokens:
            hidden = hidden[to_device(rows, torch.int64, self.device)]
        sampled = self.sampler.sample(self.model.compute_logits(hidden), batch.sample_requests)
        self._last_draws = sampled.token_ids
        self._last_draw_rows = {r.request_id: row for row, r in enumerate(batch.sample_requests)}
        return LaunchedStep(len(output.scheduled), batch.sample_slots, sampled)

    def finish(self, step: LaunchedStep) -> list[SampledToken | None]:
        results: list[SampledToken | None] = [None] * step.num_scheduled
        if step.sampled is not None:
            for slot, token in zip(step.sample_slots, step.sampled.to_host()):
                results[slot] = token
        return results

    def release_cached_memory(self) -> None:
        """After a step ran out of memory: its tensors went back to the allocator's cache in pieces
        cut for that batch; handing them back to the device lets the next batches be cut afresh."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _in_flight_inputs(self, batch: BatchInputs) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(flat positions, token ids) of input tokens that are last step's draws, still on the device."""
        if not batch.pending_requests:
            return None
        rows = [self._last_draw_rows[r.request_id] for r in batch.pending_requests]
        draws = self._last_draws[to_device(rows, torch.int64, self.device)]
        return to_device(batch.pending_token_indices, torch.int64, self.device), draws
