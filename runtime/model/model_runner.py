"""Tensors in, tokens out: flattens a scheduled batch, runs the model over the paged KV cache, samples.

Each scheduled request contributes its next `num_new_tokens` tokens; a request whose step reaches
the end of its known tokens (a decode, or the last chunk of a prompt) also gets a token sampled from
the logits of its last position. No padding: one flat token batch plus per-sequence metadata.
"""

from dataclasses import dataclass

import torch

from shoal.runtime.engine.request import Request
from shoal.runtime.engine.scheduler import SchedulerOutput
from shoal.runtime.layers.attention import AttentionMetadata
from shoal.runtime.model.llama import LlamaForCausalLM
from shoal.runtime.sampling.sampler import SampledToken, Sampler


@dataclass
class BatchInputs:
    """Host-side lists for one step, built without touching the device."""

    input_ids: list[int]
    positions: list[int]
    slot_mapping: list[int]
    query_start_loc: list[int]
    seq_lens: list[int]
    block_tables: list[list[int]]
    num_decodes: int
    sample_token_indices: list[int]  # flat index of the last token of each sampling request
    sample_requests: list[Request]
    sample_slots: list[int]  # index into the scheduled list of each sampling request


def build_batch(output: SchedulerOutput, block_size: int) -> BatchInputs:
    batch = BatchInputs([], [], [], [0], [], [], 0, [], [], [])
    for slot, item in enumerate(output.scheduled):
        request, start = item.request, item.request.num_computed_tokens
        end = start + item.num_new_tokens
        batch.input_ids.extend(request.token_ids[start:end])
        batch.positions.extend(range(start, end))
        blocks = request.block_ids
        batch.slot_mapping.extend(blocks[p // block_size] * block_size + p % block_size for p in range(start, end))
        batch.query_start_loc.append(batch.query_start_loc[-1] + item.num_new_tokens)
        batch.seq_lens.append(end)
        batch.block_tables.append(blocks)
        if item.num_new_tokens == 1:
            batch.num_decodes += 1
        if item.completes_prompt:
            batch.sample_token_indices.append(batch.query_start_loc[-1] - 1)
            batch.sample_requests.append(request)
            batch.sample_slots.append(slot)
    return batch


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
        arch = model.arch
        shape = (2, num_blocks, block_size, arch.num_key_value_heads, arch.head_dim)
        self.kv_caches = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(arch.num_hidden_layers)]
        for attention, cache in zip(model.attention_layers(), self.kv_caches):
            attention.kv_cache = cache

    @torch.inference_mode()
    def execute(self, output: SchedulerOutput) -> list[SampledToken | None]:
        """One forward step; returns a sampled token for each scheduled request that completed its
        known tokens, None for a prompt chunk that did not."""
        batch = build_batch(output, self.block_size)
        hidden = self.model(self._tensor(batch.input_ids), self._tensor(batch.positions), self._metadata(batch))
        results: list[SampledToken | None] = [None] * len(output.scheduled)
        if batch.sample_requests:
            logits = self.model.compute_logits(hidden[self._tensor(batch.sample_token_indices)])
            for slot, token in zip(batch.sample_slots, self.sampler.sample(logits, batch.sample_requests)):
                results[slot] = token
        return results

    def _metadata(self, batch: BatchInputs) -> AttentionMetadata:
        width = max(len(t) for t in batch.block_tables)
        tables = torch.zeros((len(batch.block_tables), width), dtype=torch.int32)
        for row, blocks in enumerate(batch.block_tables):
            tables[row, : len(blocks)] = torch.tensor(blocks, dtype=torch.int32)
        return AttentionMetadata(
            slot_mapping=self._tensor(batch.slot_mapping),
            query_start_loc=self._tensor(batch.query_start_loc, torch.int32),
            seq_lens=self._tensor(batch.seq_lens, torch.int32),
            block_tables=tables.to(self.device),
            num_decodes=batch.num_decodes,
            query_start_loc_host=batch.query_start_loc,
            seq_lens_host=batch.seq_lens,
            max_decode_seq_len=max(batch.seq_lens[: batch.num_decodes], default=0),
        )

    def _tensor(self, values: list[int], dtype: torch.dtype = torch.int64) -> torch.Tensor:
        return torch.tensor(values, dtype=dtype).to(self.device, non_blocking=True)
