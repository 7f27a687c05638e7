"""Prompt-lookup drafting, the acceptance backoff (per request and for the engine) and the
speculative settings, without a model."""

import pytest

from shoal.runtime.engine.drafter import Drafter
from shoal.runtime.engine.request import Request
from shoal.runtime.sampling.params import SamplingParams
from shoal.runtime.speculative.backoff import FIRST_BACKOFF_STEPS, DraftState, after_step_without_drafts, after_verify
from shoal.runtime.speculative.config import SpeculativeConfig
from shoal.runtime.speculative.ngram import propose


def test_the_latest_earlier_occurrence_of_the_longest_suffix_gives_the_drafts():
    assert propose([1, 2, 3, 4, 1, 2], 3, 1, 3) == [3, 4, 1]
    assert propose([9, 1, 2, 7, 5, 1, 2, 8, 1, 2], 1, 1, 2) == [8]  # the latest match wins
    assert propose([5, 6, 7], 3, 1, 3) == []  # nothing repeats
    assert propose([1, 2, 3, 1, 2], 0, 1, 3) == []


def test_a_match_must_start_on_a_token_boundary():
    # 256 then 0 is 00 01 00 00 00 00 00 00: token 1's bytes (01 00 00 00) sit at offset 1.
    assert propose([256, 0, 5, 1], 2, 1, 1) == []
    assert propose([256, 0, 1, 5, 1], 2, 1, 1) == [5, 1]


def test_acceptance_below_the_threshold_pauses_drafting_longer_each_time():
    state = after_verify(DraftState(), proposed=4, accepted=0, min_acceptance=0.6)
    assert not state.drafting and state.skip_steps == FIRST_BACKOFF_STEPS
    for _ in range(FIRST_BACKOFF_STEPS):
        state = after_step_without_drafts(state)
    assert state.drafting
    state = after_verify(state, proposed=4, accepted=0, min_acceptance=0.6)
    assert state.skip_steps == 2 * FIRST_BACKOFF_STEPS
    good = after_verify(DraftState(), proposed=4, accepted=3, min_acceptance=0.6)
    assert good.drafting and good.acceptance > 0.6


def test_a_draft_model_comes_with_its_method_and_only_with_it():
    with pytest.raises(ValueError, match="draft model"):
        SpeculativeConfig(method="draft_model")
    with pytest.raises(ValueError, match="draft model"):
        SpeculativeConfig(method="ngram", model="default")
    assert SpeculativeConfig(method="draft_model", model="default").enabled


def test_a_new_request_starts_paused_while_nobody_s_drafts_pay():
    drafter = Drafter(SpeculativeConfig(method="ngram", min_acceptance=0.5))
    first, second, third = (_request(f"r{i}") for i in range(3))
    assert drafter.plan(first, room=4, num_running=1) == 4  # unproven: the first one tries
    drafter.verified("r0", proposed=4, accepted=0)
    assert drafter.plan(second, room=4, num_running=2) == 0  # nobody's pay: a newcomer waits too
    for _ in range(FIRST_BACKOFF_STEPS):
        drafter.skipped(second)
    assert drafter.plan(second, room=4, num_running=2) == 4
    drafter.verified("r1", proposed=4, accepted=4)
    assert drafter.plan(third, room=4, num_running=3) == 4  # someone's pay again


def test_the_engine_s_pause_runs_out_with_its_steps_so_short_requests_try_again():
    drafter = Drafter(SpeculativeConfig(method="ngram", min_acceptance=0.5))
    assert drafter.plan(_request("r0"), room=4, num_running=1) == 4
    drafter.verified("r0", proposed=4, accepted=0)
    drafter.forget("r0")
    for i in range(FIRST_BACKOFF_STEPS):  # steps in which only short, paused requests decode
        assert drafter.plan(_request(f"short{i}"), room=4, num_running=1) == 0
        assert drafter.fill([], lambda request_id: []) == []
    assert drafter.plan(_request("late"), room=4, num_running=1) == 4


def _request(request_id: str) -> Request:
    tokens = [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1]  # a lookup always finds 2 3 4 5
    return Request(request_id, tokens, SamplingParams(temperature=0), max_tokens=16)
