"""Sampler: greedy, temperature draws, top-k/top-p/min-p, penalties, per-request seeds, logprobs."""

import math

import pytest
import torch

from shoal.runtime.engine.request import Request
from shoal.runtime.errors import InvalidRequestError
from shoal.runtime.sampling.params import SamplingParams
from shoal.runtime.sampling.sampler import Sampler, apply_min_p, apply_penalties, apply_top_k_top_p

CPU = torch.device("cpu")


def request(sampling: SamplingParams, prompt=(1, 2, 3), output=(), request_id="r") -> Request:
    r = Request(request_id, list(prompt), sampling, max_tokens=100)
    r.token_ids.extend(output)
    return r


def test_greedy_picks_the_argmax():
    logits = torch.tensor([[0.1, 3.0, 0.2], [5.0, 1.0, 0.0]])
    tokens = Sampler(CPU).sample(logits, [request(SamplingParams(temperature=0)), request(SamplingParams(temperature=0))]).to_host()
    assert [t.token_id for t in tokens] == [1, 0]


def test_temperature_draws_follow_the_softmax():
    logits = torch.log(torch.tensor([[1.0, 2.0, 4.0]]))
    sampler = Sampler(CPU, seed=1)
    counts = [0, 0, 0]
    for _ in range(7000):
        counts[sampler.sample(logits, [request(SamplingParams(temperature=1.0))]).to_host()[0].token_id] += 1
    for count, expected in zip(counts, (1 / 7, 2 / 7, 4 / 7)):
        assert abs(count / 7000 - expected) < 0.025


def test_top_k_one_and_tiny_top_p_are_greedy_even_at_high_temperature():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    sampler = Sampler(CPU)
    for params in (SamplingParams(temperature=5.0, top_k=1), SamplingParams(temperature=5.0, top_p=1e-6)):
        tokens = sampler.sample(logits, [request(params) for _ in range(4)]).to_host()
        assert [t.token_id for t in tokens] == logits.argmax(-1).tolist()


def test_top_k_keeps_k_tokens_and_top_p_keeps_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept_k = apply_top_k_top_p(logits.clone(), torch.tensor([2]), torch.tensor([1.0]))
    assert torch.isfinite(kept_k).tolist() == [[True, True, False, False]]
    kept_p = apply_top_k_top_p(logits.clone(), torch.tensor([4]), torch.tensor([0.75]))
    assert torch.isfinite(kept_p).tolist() == [[True, True, False, False]]
    kept_p = apply_top_k_top_p(logits.clone(), torch.tensor([4]), torch.tensor([0.85]))
    assert torch.isfinite(kept_p).tolist() == [[True, True, True, False]]


def test_min_p_drops_tokens_below_a_fraction_of_the_best():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = apply_min_p(logits, torch.tensor([0.35]))  # threshold 0.175
    assert torch.isfinite(kept).tolist() == [[True, True, False, False]]


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits_of_seen_tokens():
    logits = torch.tensor([[2.0, -2.0, 2.0, -2.0]])
    r = request(SamplingParams(repetition_penalty=2.0), prompt=[0], output=[1])
    assert apply_penalties(logits, [r]).tolist() == [[1.0, -4.0, 2.0, -2.0]]


def test_presence_and_frequency_penalties_count_output_tokens_only():
    logits = torch.zeros(1, 4)
    r = request(SamplingParams(presence_penalty=0.5, frequency_penalty=0.25), prompt=[3], output=[1, 1, 2])
    assert apply_penalties(logits, [r]).tolist() == [[0.0, -1.0, -0.75, 0.0]]


def test_seeded_request_draws_the_same_tokens_whatever_else_is_in_the_batch():
    vocab = 1000
    logits = torch.zeros(1, vocab)
    seeded = SamplingParams(temperature=1.0, seed=1234)

    def draws(batch_size: int, position: int, params: SamplingParams = seeded) -> list[int]:
        sampler = Sampler(CPU, seed=batch_size)
        r = request(params)
        others = [request(SamplingParams(temperature=1.0), request_id=f"o{i}") for i in range(batch_size - 1)]
        out = []
        for _ in range(5):
            batch = others[:position] + [r] + others[position:]
            out.append(sampler.sample(logits.expand(batch_size, vocab).clone(), batch).to_host()[position].token_id)
        return out

    alone = draws(1, 0)
    assert draws(6, 3) == alone
    assert draws(3, 2) == alone
    assert draws(1, 0, SamplingParams(temperature=1.0, seed=99)) != alone


def test_logprobs_are_of_the_raw_distribution_with_sorted_alternatives():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    token = Sampler(CPU).sample(logits, [request(SamplingParams(temperature=0, logprobs=2, repetition_penalty=1.5))]).to_host()[0]
    expected = torch.log_softmax(logits, -1)[0]
    assert token.token_id == 1
    assert math.isclose(token.logprob, expected[1].item(), rel_tol=1e-6)
    assert [t for t, _ in token.top_logprobs] == [1, 2]
    assert math.isclose(token.top_logprobs[1][1], expected[2].item(), rel_tol=1e-6)


def test_rows_without_logprobs_get_none_in_a_mixed_batch():
    logits = torch.randn(2, 8)
    out = Sampler(CPU).sample(logits, [request(SamplingParams(temperature=0)), request(SamplingParams(temperature=0, logprobs=0))]).to_host()
    assert out[0].logprob is None
    assert out[1].logprob is not None and out[1].top_logprobs == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", -0.1),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("min_p", 1.1),
        ("repetition_penalty", 0.0),
        ("presence_penalty", 2.5),
        ("frequency_penalty", -3.0),
        ("max_tokens", 0),
        ("logprobs", 21),
        ("stop", ("",)),
        ("stop_token_ids", (-1,)),
    ],
)
def test_invalid_sampling_values_name_their_field(field, value):
    with pytest.raises(InvalidRequestError) as error:
        SamplingParams(**{field: value})
    assert error.value.field == f"sampling.{field}"
    assert field in str(error.value)
