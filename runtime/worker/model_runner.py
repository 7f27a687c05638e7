"""Tensors in, tokens out: runs the model over the paged KV cache for one step, and samples.

The step arrives as a `StepInput` (engine/messages.py), the only thing the worker reads from the
engine. Each row contributes its next `num_new_tokens` tokens (batch_inputs.py flattens them: no
padding, one token batch plus per-sequence metadata); a row that reaches the end of its request's
known tokens (a decode, or the last chunk of a prompt) gets a token sampled from the logits of its
last position. Decode-only batches replay CUDA graphs where they were captured.

`launch` only queues the work: the draws stay on the device, and a decode in the next step reads
its input token from them there, so the host can schedule and launch step N+1 while the device
still runs step N (async scheduling). `finish` waits for a step's draws.

As a pipeline's stage 0 (`pipeline`), `launch` runs the first stage and hands its activations on;
`finish` samples once the last stage's logits come back (worker/stage_forward.py).

Worker state, keyed by request id: each seeded request's own generator (made the first time it
samples, dropped when the step input reports it finished) and where last step's draws are.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from shoal.runtime.engine.messages import RowInput, SampledToken, StepInput
from shoal.runtime.model.llama import LlamaForCausalLM
from shoal.runtime.parallel.pipeline_stage import PipelineLinks
from shoal.runtime.sampling.metadata import SamplingMetadata, build_sampling_metadata, to_device
from shoal.runtime.sampling.sampler import Sampler
from shoal.runtime.structured.grammar import apply_bitmask
from shoal.runtime.worker.batch_inputs import BatchInputs, build_batch
from shoal.runtime.worker.cuda_graphs import DecodeGraphs
from shoal.runtime.worker.fault_injection import StepMemoryLimit
from shoal.runtime.worker.kv_cache_sizing import KVCacheShape
from shoal.runtime.worker.sampled_batch import SampledBatch
from shoal.runtime.worker.stage_forward import later_stage, receive_logits, run_first_stage


@dataclass
class LaunchedStep:
    num_rows: int
    sample_slots: list[int]  # index into the step's rows of each draw
    sampled: SampledBatch | None


@dataclass
class LaunchedStage:
    """A pipeline's step as stage 0 launched it: sampled once the last stage's logits come (`finish`)."""

    step: StepInput
    batch: BatchInputs
    sent: list[dist.Work]  # the activations on their way to stage 1


class ModelRunner:
    def __init__(
        self,
        model: LlamaForCausalLM,
        sampler: Sampler,
        kv: KVCacheShape,
        memory_limit: StepMemoryLimit | None = None,  # for testing only (fault_injection.py)
        pipeline: PipelineLinks | None = None,  # a pipeline stage's model (worker/stage_forward.py)
    ):
        self.model = model
        self.pipeline = pipeline
        self.sampler = sampler
        self.num_blocks = kv.num_blocks
        self.block_size = kv.block_size
        self.device = kv.placement.device
        self.decode_graphs: DecodeGraphs | None = None
        self.memory_limit = memory_limit
        self.kv_caches = model.allocate_kv_caches(kv.num_blocks, kv.block_size, kv.placement.dtype, self.device)
        self._generators: dict[str, torch.Generator] = {}
        # The last launched step's draws, by request: where in-flight input tokens come from.
        self._last_draws: torch.Tensor | None = None
        self._last_draw_rows: dict[str, int] = {}

    def capture_decode_graphs(self, max_batch_size: int, max_seq_len: int) -> None:
        graphs = DecodeGraphs(self.model, max_batch_size, max_seq_len, self.block_size, self.device)
        graphs.capture()
        self.decode_graphs = graphs

    def execute(self, step: StepInput) -> list[SampledToken | None]:
        """One step, waited for: a token for each row that completed its known tokens, None for a
        prompt chunk that did not."""
        return self.finish(self.launch(step))

    @torch.inference_mode()
    def launch(self, step: StepInput) -> "LaunchedStep | LaunchedStage":
        for request_id in step.finished_request_ids:
            self._generators.pop(request_id, None)
        if self.memory_limit is not None:
            self.memory_limit.check(step)
        batch, in_flight = self._batch(step)
        if self.pipeline is not None:
            return LaunchedStage(step, batch, run_first_stage(self.model, self.pipeline, batch, in_flight, self.device))
        return self._sample(step, batch, self._logits(batch, in_flight))

    def _sample(self, step: StepInput, batch: BatchInputs, logits: torch.Tensor | None) -> LaunchedStep:
        if logits is None:
            return LaunchedStep(len(step.rows), [], None)
        sample_rows = [step.rows[slot] for slot in batch.sample_slots]
        places = sampling_places(batch.sample_slots) if any(row.num_drafts for row in step.rows) else None
        drafts = None if places is None else verified_drafts(sample_rows, places)
        metadata = self._sampling_metadata(sample_rows, places)
        if step.token_bitmask is not None:  # filled now, while the device runs the forward pass
            apply_bitmask(logits, step.token_bitmask())
        sampled = self.sampler.sample(logits, metadata, _drafts_tensor(drafts, self.device))
        self._remember_draws(sampled.token_ids, sample_rows)
        return LaunchedStep(len(step.rows), batch.sample_slots, SampledBatch(sampled, metadata.logprobs))

    @torch.inference_mode()
    def follow(self, step: StepInput, receive_draws: Callable[[torch.Tensor], None]) -> None:
        """A tensor-parallel worker rank's part of a step rank 0 launches: the same forward pass and
        logits (their collectives need every rank), then, instead of sampling, the draws rank 0
        sampled, received into a tensor (they are the next step's in-flight input tokens)."""
        batch, in_flight = self._batch(step)
        logits = self._logits(batch, in_flight)
        if logits is None:
            return
        draws = torch.empty(len(batch.sample_slots), dtype=torch.int64, device=self.device)
        receive_draws(draws)
        self._remember_draws(draws, [step.rows[slot] for slot in batch.sample_slots])

    @torch.inference_mode()
    def follow_stage(self, step: StepInput) -> None:
        """A pipeline rank's part of a step rank 0 launched: its layers (the last stage's logits go
        back to rank 0, which samples). Rank 0's tensor-parallel partners in the first stage have no
        logits to wait for; their micro-batches never take an in-flight token."""
        batch = build_batch(step, self.block_size)
        if not self.pipeline.layout.is_first:
            later_stage(self.model, self.pipeline, batch, self.device)
            return
        for work in run_first_stage(self.model, self.pipeline, batch, None, self.device):
            work.wait()

    def _sample_stage(self, launched: "LaunchedStage") -> LaunchedStep:
        batch = launched.batch
        logits = None
        if batch.sample_slots:
            logits = receive_logits(self.pipeline, len(batch.sample_slots), self.device)
        for work in launched.sent:
            work.wait()
        return self._sample(launched.step, batch, logits)

    def _batch(self, step: StepInput) -> tuple[BatchInputs, tuple[torch.Tensor, torch.Tensor] | None]:
        """The step's batch and its in-flight input tokens (last step's draws), which it takes over."""
        batch = build_batch(step, self.block_size)
        in_flight = self._in_flight_inputs(batch)
        self._last_draws, self._last_draw_rows = None, {}
        return batch, in_flight

    def _logits(self, batch: BatchInputs, in_flight: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor | None:
        """The logits of the batch's sampling rows (None when no row samples)."""
        hidden = forward(self.model, self.decode_graphs, batch, in_flight, self.device)
        if not batch.sample_slots:
            return None
        return self.model.compute_logits(batch.sampling_rows(hidden))

    def _remember_draws(self, draws: torch.Tensor, sample_rows: list[RowInput]) -> None:
        self._last_draws = draws
        self._last_draw_rows = {r.request_id: i for i, r in enumerate(sample_rows)}

    @torch.inference_mode()
    def finish(self, step: "LaunchedStep | LaunchedStage") -> list[SampledToken | None]:
        """A token per row that samples; a row with drafts gets its correction (or bonus) token,
        carrying the drafts it accepted. A pipeline's step is sampled here, once its logits come."""
        if isinstance(step, LaunchedStage):
            step = self._sample_stage(step)
        results: list[SampledToken | None] = [None] * step.num_rows
        if step.sampled is None:
            return results
        tokens, accepted = step.sampled.to_host()
        rows_of: dict[int, list[int]] = {}
        for row, slot in enumerate(step.sample_slots):
            rows_of.setdefault(slot, []).append(row)
        for slot, rows in rows_of.items():
            if len(rows) == 1:
                results[slot] = tokens[rows[0]]
                continue
            kept, final = [], tokens[rows[-1]]
            for row in rows[:-1]:
                if not accepted[row]:
                    final = tokens[row]
                    break
                kept.append(tokens[row])
            final.accepted = kept
            results[slot] = final
        return results

    def weight_targets(self) -> dict[str, torch.Tensor]:
        return self.model.checkpoint_targets()

    def release_cached_memory(self) -> None:
        """After a step ran out of memory: its tensors went back to the allocator's cache in pieces
        cut for that batch; handing them back to the device lets the next batches be cut afresh."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _sampling_metadata(self, rows: list[RowInput], places: list[int] | None) -> SamplingMetadata:
        params = [r.sampling for r in rows]
        history = None
        if any(r.prompt_token_ids is not None for r in rows):  # some row has penalties
            outputs = [r.output_token_ids or [] for r in rows]
            if places is not None:  # a draft's verification counts the drafts before it as output
                outputs = [o + r.token_ids[1 : 1 + p] for o, r, p in zip(outputs, rows, places, strict=True)]
            history = ([r.prompt_token_ids or [] for r in rows], outputs)
        return build_sampling_metadata(params, [self._generator(r) for r in rows], self.device, history)

    def _generator(self, row: RowInput) -> torch.Generator | None:
        seed = row.sampling.seed
        if seed is None:
            return None
        generator = self._generators.get(row.request_id)
        if generator is None:
            generator = self._generators[row.request_id] = torch.Generator(device=self.device)
            generator.manual_seed(seed)
        return generator

    def _in_flight_inputs(self, batch: BatchInputs) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(flat positions, token ids) of input tokens that are last step's draws, still on the device."""
        if not batch.pending_request_ids:
            return None
        rows = [self._last_draw_rows[request_id] for request_id in batch.pending_request_ids]
        draws = self._last_draws[to_device(rows, torch.int64, self.device)]
        return to_device(batch.pending_token_indices, torch.int64, self.device), draws


def forward(
    model: LlamaForCausalLM,
    graphs: DecodeGraphs | None,
    batch: BatchInputs,
    in_flight: tuple[torch.Tensor, torch.Tensor] | None,
    device: torch.device,
) -> torch.Tensor:
    """The batch's hidden states, replayed from a CUDA graph where one fits; `in_flight` fills input
    tokens that are still on the device (flat positions, token ids)."""
    if graphs is not None and graphs.fits(batch):
        return graphs.run(batch, in_flight)
    input_ids, positions, meta = batch.to_device(device)
    if in_flight is not None:
        input_ids.index_copy_(0, *in_flight)
    return model(input_ids, positions, meta)


def sampling_places(sample_slots: list[int]) -> list[int]:
    """Each sampling row's place among its step row's sampling rows (0 for a row without drafts): a
    row's sampling rows are consecutive in the batch."""
    places = []
    for index, slot in enumerate(sample_slots):
        places.append(places[-1] + 1 if index and sample_slots[index - 1] == slot else 0)
    return places


def verified_drafts(rows: list[RowInput], places: list[int]) -> list[int]:
    """Per sampling row, the draft it verifies (-1: none): sampling row i of a row with k drafts
    verifies draft i (token_ids[1 + i]); row k verifies none."""
    return [row.token_ids[1 + p] if p < row.num_drafts else -1 for row, p in zip(rows, places, strict=True)]


def _drafts_tensor(drafts: list[int] | None, device: torch.device) -> torch.Tensor | None:
    return None if drafts is None else to_device(drafts, torch.int64, device)
