"""One step's model inputs, built on the host from the step's rows (engine/messages.py), then moved in
three copies (token data, sequence data, block tables) to the device."""

from dataclasses import dataclass, field

import numpy as np
import torch

from shoal.runtime.engine.messages import RowInput, StepInput
from shoal.runtime.layers.attention import AttentionMetadata
from shoal.runtime.sampling.metadata import to_device


@dataclass
class BatchInputs:
    input_ids: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    slot_mapping: list[int] = field(default_factory=list)
    query_start_loc: list[int] = field(default_factory=lambda: [0])
    seq_lens: list[int] = field(default_factory=list)
    block_tables: list[list[int]] = field(default_factory=list)
    num_decodes: int = 0  # leading single-token sequences
    # Each sampling row: the flat index of the token it samples after, and its step row (a row with
    # drafts has several sampling rows, one per draft plus one).
    sample_token_indices: list[int] = field(default_factory=list)
    sample_slots: list[int] = field(default_factory=list)
    # Tokens still in flight from the previous step (async scheduling): their flat index here, and
    # the request whose previous draw fills it on the device.
    pending_token_indices: list[int] = field(default_factory=list)
    pending_request_ids: list[str] = field(default_factory=list)

    @property
    def num_seqs(self) -> int:
        return len(self.seq_lens)

    @property
    def num_tokens(self) -> int:
        return len(self.input_ids)

    def block_table_array(self, rows: int | None = None, width: int | None = None) -> np.ndarray:
        """[rows, width] int32, zero-padded (rows and width default to what the batch needs)."""
        width = width or max(len(t) for t in self.block_tables)
        table = np.zeros((rows or self.num_seqs, width), dtype=np.int32)
        for row, blocks in enumerate(self.block_tables):
            table[row, : len(blocks)] = blocks
        return table

    def sampling_rows(self, hidden: torch.Tensor) -> torch.Tensor:
        """The hidden states of the sampling rows, from those of every token."""
        rows = self.sample_token_indices
        if len(rows) == self.num_tokens:
            return hidden
        return hidden[to_device(rows, torch.int64, hidden.device)]

    def to_device(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, AttentionMetadata]:
        """input_ids, positions and attention metadata on the device."""
        tokens = torch.from_numpy(np.array([self.input_ids, self.positions, self.slot_mapping], dtype=np.int64)).to(
            device, non_blocking=True
        )
        sequences = torch.from_numpy(np.array(self.query_start_loc + self.seq_lens, dtype=np.int32)).to(
            device, non_blocking=True
        )
        meta = AttentionMetadata(
            slot_mapping=tokens[2],
            query_start_loc=sequences[: self.num_seqs + 1],
            seq_lens=sequences[self.num_seqs + 1 :],
            block_tables=torch.from_numpy(self.block_table_array()).to(device, non_blocking=True),
            num_decodes=self.num_decodes,
            query_start_loc_host=self.query_start_loc,
            seq_lens_host=self.seq_lens,
            max_decode_seq_len=max(self.seq_lens[: self.num_decodes], default=0),
        )
        return tokens[0], tokens[1], meta


def build_batch(step: StepInput, block_size: int) -> BatchInputs:
    batch = BatchInputs()
    for slot, row in enumerate(step.rows):
        if row.num_drafts:
            _add_verify_row(batch, row, slot, block_size)
            continue
        start, end, blocks = row.start, row.end, row.block_ids
        batch.input_ids.extend(row.token_ids)
        if len(row.token_ids) < row.num_new_tokens:  # the last token is the previous step's draw, not yet on the host
            batch.pending_token_indices.append(len(batch.input_ids))
            batch.pending_request_ids.append(row.request_id)
            batch.input_ids.append(0)
        if row.num_new_tokens == 1:
            batch.num_decodes += 1
            batch.positions.append(start)
            batch.slot_mapping.append(blocks[start // block_size] * block_size + start % block_size)
        else:
            batch.positions.extend(range(start, end))
            batch.slot_mapping.extend(blocks[p // block_size] * block_size + p % block_size for p in range(start, end))
        batch.query_start_loc.append(batch.query_start_loc[-1] + row.num_new_tokens)
        batch.seq_lens.append(end)
        batch.block_tables.append(blocks)
        if row.sampling is not None:  # after the last token, and after each draft's predecessor
            last = batch.query_start_loc[-1] - 1
            batch.sample_token_indices.extend(range(last - row.num_drafts, last + 1))
            batch.sample_slots.extend([slot] * (row.num_drafts + 1))
    return batch


def _add_verify_row(batch: BatchInputs, row: RowInput, slot: int, block_size: int) -> None:
    """A row with drafts, as one single-token sequence per token: the token at position p attends to
    positions up to p, as a decode there would. Every new K/V is written before any attention reads
    it (layers/attention.py), so this is exactly the causal attention of the row, and the step stays
    all decodes: the kernels and CUDA graphs of decode steps run it."""
    for offset, token_id in enumerate(row.token_ids):
        position = row.start + offset
        batch.input_ids.append(token_id)
        batch.positions.append(position)
        batch.slot_mapping.append(row.block_ids[position // block_size] * block_size + position % block_size)
        batch.query_start_loc.append(batch.query_start_loc[-1] + 1)
        batch.seq_lens.append(position + 1)
        batch.block_tables.append(row.block_ids)
        batch.num_decodes += 1
        batch.sample_token_indices.append(batch.query_start_loc[-1] - 1)
        batch.sample_slots.append(slot)
