"""best_of: the n choices with the highest total logprob, renumbered from 0, ties to the lower index."""

import pytest

from shoal.router.openai.best_of import best_choices
from shoal.v1 import runtime_pb2 as pb


def message(index: int, text: str, *logprobs: float) -> pb.GenerateResponse:
    return pb.GenerateResponse(
        index=index, text=text, logprobs=[pb.TokenLogprob(token=text, logprob=lp) for lp in logprobs]
    )


def test_the_best_choices_by_total_logprob_come_renumbered():
    messages = [
        message(0, "a", -1.0),
        message(1, "b", -0.5),
        message(2, "c", -0.1),
        message(0, "a", -1.0),  # choice 0 totals -2.0
        message(1, "b", -0.2),  # choice 1 totals -0.7
        message(2, "c", -0.6),  # choice 2 totals -0.7: a tie, the lower index first
    ]
    chosen = best_choices(messages, 2, keep_logprobs=False)
    assert [(m.index, m.text) for m in chosen] == [(0, "b"), (0, "b"), (1, "c"), (1, "c")]
    assert all(not m.logprobs for m in chosen)
    kept = best_choices(messages, 1, keep_logprobs=True)
    assert [lp.logprob for m in kept for lp in m.logprobs] == [-0.5, pytest.approx(-0.2)]
    assert messages[1].index == 1 and messages[1].logprobs  # the runtime's messages are left as they came
