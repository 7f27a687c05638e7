"""Sampler: greedy, temperature draws, top-k/top-p/min-p, penalties, per-row seeded generators, logprobs."""

import math

import pytest
import torch

from shoal.runtime.errors import InvalidRequestError
from shoal.runtime.sampling.metadata import SamplingMetadata, build_sampling_metadata
from shoal.runtime.sampling.params import SamplingParams
from shoal.runtime.sampling.sampler import Sampler, apply_min_p, apply_penalties, apply_top_k_top_p
from shoal.runtime.worker.sampled_batch import SampledBatch

CPU = torch.device("cpu")


def rows(*params: SamplingParams, generators=None, prompts=None, outputs=None) -> SamplingMetadata:
    """Per-row tensors for the given parameters (prompts [1, 2, 3] and no output by default)."""
    history = (prompts or [[1, 2, 3]] * len(params), outputs or [[]] * len(params))
    return build_sampling_metadata(list(params), generators or [None] * len(params), CPU, history)


def token_ids(sampler: Sampler, logits: torch.Tensor, metadata: SamplingMetadata) -> list[int]:
    return sampler.sample(logits, metadata).token_ids.tolist()


def test_greedy_picks_the_argmax():
    logits = torch.tensor([[0.1, 3.0, 0.2], [5.0, 1.0, 0.0]])
    assert token_ids(Sampler(CPU), logits, rows(SamplingParams(temperature=0), SamplingParams(temperature=0))) == [1, 0]


def test_temperature_draws_follow_the_softmax():
    logits = torch.log(torch.tensor([[1.0, 2.0, 4.0]]))
    sampler = Sampler(CPU, seed=1)
    counts = [0, 0, 0]
    for _ in range(7000):
        counts[token_ids(sampler, logits, rows(SamplingParams(temperature=1.0)))[0]] += 1
    for count, expected in zip(counts, (1 / 7, 2 / 7, 4 / 7), strict=True):
        assert abs(count / 7000 - expected) < 0.025


def test_top_k_one_and_tiny_top_p_are_greedy_even_at_high_temperature():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    sampler = Sampler(CPU)
    for params in (SamplingParams(temperature=5.0, top_k=1), SamplingParams(temperature=5.0, top_p=1e-6)):
        assert token_ids(sampler, logits, rows(*[params] * 4)) == logits.argmax(-1).tolist()


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
    metadata = rows(SamplingParams(repetition_penalty=2.0), prompts=[[0]], outputs=[[1]])
    assert apply_penalties(logits, metadata.penalties).tolist() == [[1.0, -4.0, 2.0, -2.0]]


def test_presence_and_frequency_penalties_count_output_tokens_only():
    logits = torch.zeros(1, 4)
    metadata = rows(SamplingParams(presence_penalty=0.5, frequency_penalty=0.25), prompts=[[3]], outputs=[[1, 1, 2]])
    assert apply_penalties(logits, metadata.penalties).tolist() == [[0.0, -1.0, -0.75, 0.0]]


def test_seeded_request_draws_the_same_tokens_whatever_else_is_in_the_batch():
    vocab = 1000
    logits = torch.zeros(1, vocab)
    seeded = SamplingParams(temperature=1.0, seed=1234)

    def draws(batch_size: int, position: int, params: SamplingParams = seeded) -> list[int]:
        sampler = Sampler(CPU, seed=batch_size)
        own = torch.Generator().manual_seed(params.seed)  # the worker keeps one per seeded request
        generators = [None] * (batch_size - 1)
        generators.insert(position, own)
        batch = [SamplingParams(temperature=1.0)] * (batch_size - 1)
        batch.insert(position, params)
        out = []
        for _ in range(5):
            metadata = rows(*batch, generators=generators)
            out.append(token_ids(sampler, logits.expand(batch_size, vocab).clone(), metadata)[position])
        return out

    alone = draws(1, 0)
    assert draws(6, 3) == alone
    assert draws(3, 2) == alone
    assert draws(1, 0, SamplingParams(temperature=1.0, seed=99)) != alone


def test_logprobs_are_of_the_raw_distribution_with_sorted_alternatives():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    metadata = rows(SamplingParams(temperature=0, logprobs=2, repetition_penalty=1.5))
    (token,), _ = SampledBatch(Sampler(CPU).sample(logits, metadata), metadata.logprobs).to_host()
    expected = torch.log_softmax(logits, -1)[0]
    assert token.token_id == 1
    assert math.isclose(token.logprob, expected[1].item(), rel_tol=1e-6)
    assert [t for t, _ in token.top_logprobs] == [1, 2]
    assert math.isclose(token.top_logprobs[1][1], expected[2].item(), rel_tol=1e-6)


def test_rows_without_logprobs_get_none_in_a_mixed_batch():
    logits = torch.randn(2, 8)
    metadata = rows(SamplingParams(temperature=0), SamplingParams(temperature=0, logprobs=0))
    out, _ = SampledBatch(Sampler(CPU).sample(logits, metadata), metadata.logprobs).to_host()
    assert out[0].logprob is None
    assert out[1].logprob is not None and out[1].top_logprobs == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", -0.1),
        ("temperature", float("inf")),
        ("temperature", float("nan")),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("top_k", -2),
        ("min_p", 1.1),
        ("repetition_penalty", 0.0),
        ("repetition_penalty", float("inf")),
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
