"""A constrained request's grammar state during decoding, and each step's mask of allowed tokens.

Each constrained request has an xgrammar GrammarMatcher: the scheduler feeds it every token it
appends (engine/scheduler.py), and the request ends once the grammar is complete. Before a step
samples, `StepBitmask` fills one row of bits per sampling row (all ones for a row without a
grammar); the worker calls it after it has queued the forward pass, so on a GPU the host computes
the masks while the device runs the model, and applies them to the logits before sampling.
"""

import itertools
import time
from collections.abc import Callable

import torch
import xgrammar as xgr


def new_matcher(compiled: xgr.CompiledGrammar) -> xgr.GrammarMatcher:
    return xgr.GrammarMatcher(compiled)


class StepBitmask:
    """The allowed tokens of one step's sampling rows, filled when called. `before_fill` first feeds
    the grammars the tokens of the step before, where those were still in flight (async scheduling).
    A sampling row that verifies a draft is masked where the grammar stands after the drafts before
    it (`drafts_before`): they are fed, the mask filled, and the grammar rolled back."""

    def __init__(
        self,
        matchers: list[xgr.GrammarMatcher | None],
        vocab_size: int,
        before_fill: Callable[[], None],
        drafts_before: list[list[int]] | None = None,
    ):
        self.matchers = matchers
        self.drafts_before = drafts_before or [[] for _ in matchers]
        self.vocab_size = vocab_size
        self.before_fill = before_fill
        self.fill_s = 0.0  # how long the last fill took (not counting before_fill)

    def __call__(self) -> torch.Tensor:
        self.before_fill()
        started = time.perf_counter()
        bitmask = xgr.allocate_token_bitmask(len(self.matchers), self.vocab_size)  # all allowed
        for row, (matcher, drafts) in enumerate(zip(self.matchers, self.drafts_before, strict=True)):
            if matcher is None:
                continue
            fed = feed(matcher, drafts)
            # A grammar complete here ends its request at this token: the row's draw will be dropped.
            if fed == len(drafts) and not matcher.is_terminated():
                matcher.fill_next_token_bitmask(bitmask, row)
            if fed:
                matcher.rollback(fed)
        self.fill_s = time.perf_counter() - started
        return bitmask


def feed(matcher: xgr.GrammarMatcher, tokens: list[int]) -> int:
    """Feeds the tokens until the grammar refuses one; how many it took (roll them back to undo)."""
    return sum(1 for _ in itertools.takewhile(matcher.accept_token, tokens))


def apply_bitmask(logits: torch.Tensor, bitmask: torch.Tensor) -> None:
    """Sets the logits of disallowed tokens to -inf, in place (on the logits' device)."""
    xgr.apply_token_bitmask_inplace(logits, bitmask.to(logits.device, non_blocking=True))
