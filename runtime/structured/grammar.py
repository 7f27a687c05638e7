"""A constrained request's grammar state during decoding, and each step's mask of allowed tokens.

Each constrained request has an xgrammar GrammarMatcher: the scheduler feeds it every token it
appends (engine/scheduler.py), and the request ends once the grammar is complete. Before a step
samples, `StepBitmask` fills one row of bits per sampling row (all ones for a row without a
grammar); the worker calls it after it has queued the forward pass, so on a GPU the host computes
the masks while the device runs the model, and applies them to the logits before sampling.
"""

import time
from collections.abc import Callable

import torch
import xgrammar as xgr


def new_matcher(compiled: xgr.CompiledGrammar) -> xgr.GrammarMatcher:
    return xgr.GrammarMatcher(compiled)


class StepBitmask:
    """The allowed tokens of one step's sampling rows, filled when called. `before_fill` first feeds
    the grammars the tokens of the step before, where those were still in flight (async scheduling)."""

    def __init__(self, matchers: list[xgr.GrammarMatcher | None], vocab_size: int, before_fill: Callable[[], None]):
        self.matchers = matchers
        self.vocab_size = vocab_size
        self.before_fill = before_fill
        self.fill_s = 0.0  # how long the last fill took (not counting before_fill)

    def __call__(self) -> torch.Tensor:
        self.before_fill()
        started = time.perf_counter()
        bitmask = xgr.allocate_token_bitmask(len(self.matchers), self.vocab_size)  # all allowed
        for row, matcher in enumerate(self.matchers):
            # A grammar the step before completed ended its request; the row's draw will be dropped.
            if matcher is not None and not matcher.is_terminated():
                matcher.fill_next_token_bitmask(bitmask, row)
        self.fill_s = time.perf_counter() - started
        return bitmask


def apply_bitmask(logits: torch.Tensor, bitmask: torch.Tensor) -> None:
    """Sets the logits of disallowed tokens to -inf, in place (on the logits' device)."""
    xgr.apply_token_bitmask_inplace(logits, bitmask.to(logits.device, non_blocking=True))
