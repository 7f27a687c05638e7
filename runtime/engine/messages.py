"""What the engine and the worker say to each other: plain data, imported by both, importing neither.

The scheduler's decision for one step goes to the worker as a `StepInput`: per row, the tokens to
run, their positions, the block table, and how to sample. The worker reads nothing else of the
engine (no `Request`, no scheduler), so the two can later sit on different threads, processes or
pipeline stages. What comes back is a `SampledToken` for each row that samples.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from shoal.runtime.sampling.params import SamplingParams


@dataclass(slots=True)
class RowInput:
    """One scheduled request's part of the step. Not frozen: one is built per row per step, and a
    frozen dataclass's __init__ costs several times as much; nobody writes it after."""

    request_id: str
    start: int  # position of the first new token: the request's tokens already computed
    num_new_tokens: int
    # The new tokens the host knows. One short of num_new_tokens when the last one is the previous
    # step's draw, still on the device (async scheduling): the worker fills it in there.
    token_ids: list[int]
    block_ids: list[int]  # the request's block table, covering start + num_new_tokens
    # How to sample the token after this row's last; None when the row is a prompt chunk that does
    # not reach the end of the known tokens (nothing is sampled).
    sampling: SamplingParams | None
    # The prompt and the output so far, for penalties only (None when the row has none).
    prompt_token_ids: list[int] | None = None
    output_token_ids: list[int] | None = None
    # Speculative decoding: the row's last num_drafts tokens are drafts. The row samples after each of
    # its last num_drafts + 1 tokens, verifying draft i against the distribution before it.
    num_drafts: int = 0

    @property
    def end(self) -> int:
        return self.start + self.num_new_tokens


@dataclass(frozen=True)
class StepInput:
    rows: list[RowInput]  # single-token (decode) rows first, then rows with drafts, then prompt chunks
    # Requests that ended since the last step: the worker drops what it keeps for them (seeded
    # generators). A request is reported once, in the first non-empty step after it ended.
    finished_request_ids: list[str]
    # Constrained rows: fills the allowed-token bitmask of the sampling rows, in their order (int32,
    # one bit per token, all set for an unconstrained row). The worker calls it after it has queued
    # the forward pass, so the host's grammar work overlaps the device's.
    token_bitmask: Callable[[], torch.Tensor] | None = None


@dataclass
class SampledToken:
    token_id: int
    logprob: float | None = None
    top_logprobs: list[tuple[int, float]] | None = None
    # A row with drafts: the drafts accepted, in order, before this token (the correction, or the
    # bonus token when every draft was accepted).
    accepted: list["SampledToken"] | None = None


@dataclass(frozen=True)
class DraftQuery:
    """What a draft model needs to propose a request's next drafts: every token known so far (the
    last one not yet run by the target), the block table (its cache uses the same slots as the
    target's, and the step's allocation already covers the positions the drafts are run at), and
    how many drafts to propose. Read during the proposing call only: the lists are the request's own."""

    request_id: str
    token_ids: list[int]
    block_ids: list[int]
    num_drafts: int
