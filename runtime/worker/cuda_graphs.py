"""CUDA graphs of the forward pass for decode-only batches.

A decode step of a large model is a few hundred small kernels; launched one by one from Python, the
launches cost more than the work at small batches. Each captured batch size replays all of them
with one call. A batch is padded up to the next captured size: padded rows have slot -1 (their K/V
is written nowhere) and context length 0 (they read nothing). Inputs live in static buffers that
the graphs read at replay; prefill steps run eagerly.
"""

import numpy as np
import torch

from shoal.runtime.layers.attention import AttentionMetadata
from shoal.runtime.model.llama import LlamaForCausalLM
from shoal.runtime.worker.batch_inputs import BatchInputs


def capture_sizes(max_batch_size: int) -> list[int]:
    """Fine steps up to 256 sequences, coarser past them (verify rows of many requests with drafts),
    where padding costs less than a graph apiece would in capture time and memory."""
    sizes = [s for s in (1, 2, 4, 8) if s < max_batch_size] + list(range(16, min(max_batch_size, 257), 16))
    sizes += list(range(320, max_batch_size, 64))
    return [s for s in sizes if s < max_batch_size] + [max_batch_size]


class DecodeGraphs:
    def __init__(
        self, model: LlamaForCausalLM, max_batch_size: int, max_seq_len: int, block_size: int, device: torch.device
    ):
        self.model = model
        self.sizes = capture_sizes(max_batch_size)
        self.max_seq_len = max_seq_len
        n = self.sizes[-1]
        self.tokens = torch.zeros((3, n), dtype=torch.int64, device=device)  # input ids, positions, slots
        self.query_start_loc = torch.arange(n + 1, dtype=torch.int32, device=device)
        self.seq_lens = torch.zeros(n, dtype=torch.int32, device=device)
        self.block_tables = torch.zeros((n, -(-max_seq_len // block_size)), dtype=torch.int32, device=device)
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self._outputs: dict[int, torch.Tensor] = {}

    @property
    def max_batch_size(self) -> int:
        return self.sizes[-1]

    def fits(self, batch: BatchInputs) -> bool:
        return batch.num_decodes == batch.num_seqs <= self.max_batch_size

    @torch.inference_mode()
    def capture(self) -> None:
        """Largest first, all in one memory pool, so smaller graphs reuse the largest one's memory."""
        self.tokens[2].fill_(-1)
        pool = None
        for size in reversed(self.sizes):
            meta = self._metadata(size)
            self.model(self.tokens[0, :size], self.tokens[1, :size], meta)  # compile and warm up
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self._outputs[size] = self.model(self.tokens[0, :size], self.tokens[1, :size], meta)
            pool = graph.pool()
            self._graphs[size] = graph
        torch.cuda.synchronize()

    def run(self, batch: BatchInputs, in_flight: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Hidden states [num_seqs, hidden] for a decode-only batch (see `fits`); `in_flight` fills
        input tokens that are still on the device (positions, token ids)."""
        n = batch.num_seqs
        size = next(s for s in self.sizes if s >= n)
        tokens = np.zeros((3, size), dtype=np.int64)
        tokens[2, n:] = -1
        tokens[0, :n], tokens[1, :n], tokens[2, :n] = batch.input_ids, batch.positions, batch.slot_mapping
        seq_lens = np.zeros(size, dtype=np.int32)
        seq_lens[:n] = batch.seq_lens
        table = batch.block_table_array()
        self.tokens[:, :size].copy_(torch.from_numpy(tokens), non_blocking=True)
        self.seq_lens[:size].copy_(torch.from_numpy(seq_lens), non_blocking=True)
        self.block_tables[:n, : table.shape[1]].copy_(torch.from_numpy(table), non_blocking=True)
        if in_flight is not None:
            self.tokens[0].index_copy_(0, *in_flight)
        self._graphs[size].replay()
        return self._outputs[size][:n]

    def _metadata(self, size: int) -> AttentionMetadata:
        # Planned for the longest context the graph may meet; the kernels read the real lengths.
        return AttentionMetadata(
            slot_mapping=self.tokens[2, :size],
            query_start_loc=self.query_start_loc[: size + 1],
            seq_lens=self.seq_lens[:size],
            block_tables=self.block_tables[:size],
            num_decodes=size,
            query_start_loc_host=list(range(size + 1)),
            seq_lens_host=[self.max_seq_len] * size,
            max_decode_seq_len=self.max_seq_len,
        )
