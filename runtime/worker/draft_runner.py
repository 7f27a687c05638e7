"""The draft model: proposes each request's next drafts, greedily, over a paged KV cache of its own.

Its cache has the target's blocks and block size (one block table addresses both), so the
scheduler's allocation for a row with k drafts covers what the draft writes while proposing them:
the positions from the last known token to the one before the last draft. It keeps, per request,
what its cache holds: the known tokens it has run, then the drafts it ran after them. Past the first
draft the target rejected, those entries are stale and are run again (overwritten) next time, as the
target's are. A preempted or ended request is forgotten (the drafter says so): its blocks went back.

Proposing k drafts is one pass over what each request's cache lacks (the tokens accepted since last
time: one or two; a whole prompt the first time), then k - 1 single-token passes, each fed the
previous pass's draws on the device; the drafts come to the host once, at the end. A short catch-up
runs as single-token sequences (as a verify row does, batch_inputs.py), so every pass of a steady
step is all decodes and replays the draft's own CUDA graphs where they were captured.

Drafts are the draft model's argmax: verification takes a draft as a proposal of probability one
(sampling/sampler.py), which keeps the target's distribution exact at any temperature.
"""

from dataclasses import dataclass

import torch

from shoal.runtime.engine.messages import DraftQuery, RowInput, StepInput
from shoal.runtime.model.llama import LlamaForCausalLM
from shoal.runtime.sampling.metadata import to_device
from shoal.runtime.sampling.params import SamplingParams
from shoal.runtime.worker.batch_inputs import build_batch
from shoal.runtime.worker.cuda_graphs import DecodeGraphs
from shoal.runtime.worker.kv_cache_sizing import KVCacheShape
from shoal.runtime.worker.model_runner import forward

GREEDY = SamplingParams(temperature=0)
# A catch-up of at most this many tokens runs as single-token sequences; a longer one (a prompt) as a chunk.
MAX_CATCH_UP_AS_DECODES = 16


@dataclass
class _Cached:
    """What the draft's cache holds for a request: the first `known` tokens, then `drafts`."""

    known: int
    drafts: list[int]


class DraftModelRunner:
    def __init__(self, model: LlamaForCausalLM, kv: KVCacheShape):
        self.model = model
        self.block_size = kv.block_size
        self.device = kv.placement.device
        self.kv_caches = model.allocate_kv_caches(kv.num_blocks, kv.block_size, kv.placement.dtype, self.device)
        self.decode_graphs: DecodeGraphs | None = None
        self._cached: dict[str, _Cached] = {}

    def capture_decode_graphs(self, max_batch_size: int, max_seq_len: int) -> None:
        graphs = DecodeGraphs(self.model, max_batch_size, max_seq_len, self.block_size, self.device)
        graphs.capture()
        self.decode_graphs = graphs

    @torch.inference_mode()
    def propose(self, queries: list[DraftQuery], finished_request_ids: list[str]) -> list[list[int]]:
        for request_id in finished_request_ids:
            self._cached.pop(request_id, None)
        if not queries:
            return []
        passes = [(list(range(len(queries))), self._catch_up(queries))]
        for j in range(1, max(q.num_drafts for q in queries)):
            active, draws = passes[-1]
            keep = [a for a, i in enumerate(active) if queries[i].num_drafts > j]
            active = [active[a] for a in keep]
            rows = [_decode_row(queries[i], j) for i in active]
            previous = draws if len(keep) == len(draws) else draws[to_device(keep, torch.int64, self.device)]
            passes.append((active, self._greedy(rows, previous)))
        on_host = torch.cat([draws for _, draws in passes]).tolist()
        drafts: list[list[int]] = [[] for _ in queries]
        at = 0
        for active, _ in passes:
            for i in active:
                drafts[i].append(on_host[at])
                at += 1
        for query, proposed in zip(queries, drafts, strict=True):
            self._cached[query.request_id] = _Cached(len(query.token_ids), proposed[:-1])
        return drafts

    def _catch_up(self, queries: list[DraftQuery]) -> torch.Tensor:
        """Runs what each request's cache lacks, up to its last known token: the first drafts, in query order."""
        rows = [self._catch_up_row(q) for q in queries]
        order = sorted(range(len(rows)), key=lambda i: rows[i].num_new_tokens > 1 and not rows[i].num_drafts)
        draws = self._greedy([rows[i] for i in order])
        if order == sorted(order):
            return draws
        inverse = [0] * len(order)
        for place, i in enumerate(order):
            inverse[i] = place
        return draws[to_device(inverse, torch.int64, self.device)]

    def _catch_up_row(self, query: DraftQuery) -> RowInput:
        tokens = query.token_ids
        cached = self._cached.get(query.request_id)
        start = 0
        if cached is not None:
            start = min(cached.known + _common_prefix(cached.drafts, tokens[cached.known :]), len(tokens) - 1)
        count = len(tokens) - start
        # A short catch-up as single-token sequences (a verify row's layout): its last one is sampled.
        as_decodes = count - 1 if 1 < count <= MAX_CATCH_UP_AS_DECODES else 0
        return RowInput(query.request_id, start, count, tokens[start:], query.block_ids, GREEDY, num_drafts=as_decodes)

    def _greedy(self, rows: list[RowInput], inputs: torch.Tensor | None = None) -> torch.Tensor:
        """The argmax after each row's last token; `inputs` are the rows' one input token each, on the
        device (the previous pass's draws), when the rows carry none."""
        batch = build_batch(StepInput(rows, []), self.block_size)
        in_flight = None
        if inputs is not None:
            in_flight = (to_device(batch.pending_token_indices, torch.int64, self.device), inputs)
        hidden = forward(self.model, self.decode_graphs, batch, in_flight, self.device)
        slots = batch.sample_slots
        last = [
            batch.sample_token_indices[i] for i in range(len(slots)) if i + 1 == len(slots) or slots[i + 1] != slots[i]
        ]
        if len(last) != hidden.shape[0]:
            hidden = hidden[to_device(last, torch.int64, self.device)]
        return self.model.compute_logits(hidden).argmax(-1)


def _decode_row(query: DraftQuery, j: int) -> RowInput:
    """Pass j: the input is draft j (on the device), at the position after the last known token's + j - 1."""
    return RowInput(query.request_id, len(query.token_ids) - 1 + j, 1, [], query.block_ids, GREEDY)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
