"""Speculative decoding in the engine, on the CPU, by both methods: prompt lookup, and a draft model
(the embedded model's first layers, bench/truncated_model.py). Greedy outputs are identical to
decoding without drafts for 32 prompts (and with stop strings, penalties, logprobs and grammars),
while drafts are accepted; a draft model that is the model itself has every draft accepted (its
cache follows the target's exactly); a tiny-vocabulary model's sampled tokens follow the target's
distribution exactly (chi-square against the distribution computed from the model, fixed seed);
random cancels in the middle of speculation give every KV block back."""

import json
import random

import jsonschema
import pytest
import torch

from bench.truncated_model import write_truncated_copy
from shoal.runtime.sampling.params import SamplingParams
from shoal.runtime.speculative.config import SpeculativeConfig
from tests.runtime.engine_harness import build, run_to_completion

pytestmark = pytest.mark.integration
NGRAM = SpeculativeConfig(method="ngram", num_speculative_tokens=4)
DRAFT_LAYERS = 10  # of the embedded model's 30
CHI_SQUARE_7_DF_AT_0_001 = 24.32  # above this, a distribution that fits is rejected once in 1,000
METHODS = ["ngram", "draft_model"]


@pytest.fixture(scope="module")
def plain(smollm_dir):
    return build(smollm_dir)


@pytest.fixture(scope="module")
def truncated_draft(smollm_dir, tmp_path_factory):
    return write_truncated_copy(smollm_dir, DRAFT_LAYERS, tmp_path_factory.mktemp("draft"))


@pytest.fixture(scope="module")
def speculating(smollm_dir, truncated_draft):
    """Engines that speculate, by method (built on first use)."""
    configs = {
        "ngram": NGRAM,
        # Its drafts are seldom accepted: without the backoff (min_acceptance 0) it keeps drafting.
        "draft_model": SpeculativeConfig(
            method="draft_model", model=str(truncated_draft), num_speculative_tokens=4, min_acceptance=0
        ),
    }
    built = {}

    def engine(method: str):
        if method not in built:
            built[method] = build(smollm_dir, speculative=configs[method])
        return built[method]

    return engine


def prompts(tokenizer) -> list[list[int]]:
    """Chat prompts whose answers tend to repeat their input (copy, continue a list, edit code)."""
    asks = [
        f"Repeat this sentence twice: {s}"
        for s in ("the cat sat on the mat.", "I like green apples.", "Paris is in France.", "Water is wet.")
    ]
    asks += [f"Continue the list: {', '.join(map(str, range(n, n + 6)))}," for n in range(1, 9)]
    asks += [f"Rewrite with {x} renamed to value:\ndef f({x}):\n    return {x} * 2 + {x}" for x in "abcdefgh"]
    asks += [f"Write the word {w} five times." for w in ("hello", "blue", "tree", "river", "stone", "light")]
    asks += [f"Spell {w} letter by letter." for w in ("banana", "mississippi", "repeat", "letter", "cocoa", "tattoo")]
    assert len(asks) == 32
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": a}], add_generation_prompt=True, tokenize=False)
        for a in asks
    ]
    return [tokenizer.encode(t, add_special_tokens=False) for t in texts]


@pytest.mark.parametrize("method", METHODS)
def test_greedy_outputs_are_identical_with_drafts_accepted(plain, speculating, smollm_tokenizer, method):
    speculative = speculating(method)
    asked = prompts(smollm_tokenizer)
    greedy = SamplingParams(temperature=0, max_tokens=48)
    assert run_to_completion(speculative.engine, asked, greedy) == run_to_completion(plain.engine, asked, greedy)
    drafts = speculative.engine.stats().drafts
    assert drafts.num_drafts > 50 and drafts.num_accepted_tokens > (100 if method == "ngram" else 20)
    assert drafts.accepted_per_position[0] >= drafts.accepted_per_position[-1]
    assert drafts.accepted_per_position[-1 if method == "ngram" else 1] > 0


def test_a_draft_model_that_is_the_model_itself_has_every_draft_accepted(plain, smollm_dir, smollm_tokenizer):
    """What the draft's cache holds after each verification (the accepted drafts kept, the rest run
    again) must match the target's: any slip would show as a rejected draft."""
    itself = SpeculativeConfig(method="draft_model", model=str(smollm_dir), num_speculative_tokens=4)
    speculative = build(smollm_dir, speculative=itself)
    asked = prompts(smollm_tokenizer)[:12]
    greedy = SamplingParams(temperature=0, max_tokens=40)
    assert run_to_completion(speculative.engine, asked, greedy) == run_to_completion(plain.engine, asked, greedy)
    drafts = speculative.engine.stats().drafts
    assert drafts.num_drafts > 50 and drafts.num_accepted_tokens == drafts.num_draft_tokens


@pytest.mark.parametrize(
    "sampling",
    [
        SamplingParams(temperature=0, max_tokens=40, stop=(" the", "\n\n")),
        SamplingParams(temperature=0, max_tokens=40, repetition_penalty=1.3, frequency_penalty=0.4),
        SamplingParams(temperature=0, max_tokens=30, logprobs=2),
    ],
    ids=["stop-strings", "penalties", "logprobs"],
)
@pytest.mark.parametrize("method", METHODS)
def test_greedy_with_stop_strings_penalties_and_logprobs_is_identical(
    plain, speculating, smollm_tokenizer, sampling, method
):
    speculative = speculating(method)
    asked = prompts(smollm_tokenizer)[:8]
    expected = _outputs(plain.engine, asked, sampling)
    got = _outputs(speculative.engine, asked, sampling)
    assert [(t, text) for t, text, _ in got] == [(t, text) for t, text, _ in expected]
    for (_, _, lp_got), (_, _, lp_expected) in zip(got, expected, strict=True):
        assert lp_got == pytest.approx(lp_expected, abs=1e-3)


def _outputs(engine, asked, sampling):
    """(tokens, text, logprobs) per prompt."""
    results = {str(i): ([], [], []) for i in range(len(asked))}
    for i, prompt in enumerate(asked):
        engine.add_request(str(i), prompt, sampling)
    while engine.has_unfinished():
        for output in engine.step().outputs:
            tokens, text, logprobs = results[output.request_id]
            tokens.extend(output.new_token_ids)
            text.append(output.new_text)
            logprobs.extend(t.logprob for t in output.logprobs or ())
    return [(tokens, "".join(text), logprobs) for tokens, text, logprobs in results.values()]


@pytest.mark.parametrize("method", METHODS)
def test_random_cancels_mid_speculation_give_every_block_back(speculating, smollm_tokenizer, method):
    engine, rng = speculating(method).engine, random.Random(7)
    asked = prompts(smollm_tokenizer)
    for i, prompt in enumerate(asked):
        engine.add_request(f"c{i}", prompt, SamplingParams(temperature=0.8, max_tokens=64, seed=i))
    live = {f"c{i}" for i in range(len(asked))}
    drafted_before = engine.stats().drafts.num_drafts
    while engine.has_unfinished():
        for output in engine.step().outputs:
            if output.finished:
                live.discard(output.request_id)
        for request_id in [r for r in sorted(live) if rng.random() < 0.08]:
            engine.abort_request(request_id)
            live.discard(request_id)
    stats = engine.stats()
    assert stats.drafts.num_drafts > drafted_before
    assert stats.kv_blocks_free == stats.kv_blocks_total and stats.num_running == stats.num_waiting == 0


@pytest.fixture(scope="module")
def peaked_tiny_model(tmp_path_factory):
    """A Llama of 8 tokens with large random weights, so its distributions are far from uniform."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(3)
    config = LlamaConfig(
        vocab_size=8,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        initializer_range=0.4,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).eval()
    path = tmp_path_factory.mktemp("tiny-peaked")
    model.save_pretrained(path)
    return path, model


def test_a_draft_model_with_another_vocabulary_is_refused(smollm_dir, peaked_tiny_model):
    path, _ = peaked_tiny_model
    with pytest.raises(ValueError, match="must share the model's tokenizer"):
        build(smollm_dir, speculative=SpeculativeConfig(method="draft_model", model=str(path)))


@pytest.mark.parametrize("method", METHODS)
def test_sampled_tokens_follow_the_target_distribution(peaked_tiny_model, tmp_path, method):
    path, hf = peaked_tiny_model
    prompt = list(range(8)) * 2  # every token seen, so each position has something to draft
    config = SpeculativeConfig(method="ngram", num_speculative_tokens=2, min_acceptance=0)  # every row drafts
    if method == "draft_model":  # its first layer: a draft that agrees with it some of the time
        draft = write_truncated_copy(path, 1, tmp_path / "draft")
        config = SpeculativeConfig(method="draft_model", model=str(draft), num_speculative_tokens=2, min_acceptance=0)
    engine = build(path, max_num_seqs=512, speculative=config)
    num_samples = 6000
    sampling = SamplingParams(temperature=1.0, max_tokens=3, ignore_eos=True)
    outputs = run_to_completion(engine.engine, [prompt] * num_samples, sampling)
    drafts = engine.engine.stats().drafts
    assert drafts.num_drafts > num_samples // 2 and 0 < drafts.num_accepted_tokens < drafts.num_draft_tokens
    exact = _exact_token_distributions(hf, prompt)
    for position in (1, 2):  # the tokens a verification emits: a draft, a correction or a bonus
        counts = torch.bincount(torch.tensor([o[position] for o in outputs]), minlength=8).double()
        expected = exact[position] * num_samples
        chi_square = float(((counts - expected) ** 2 / expected).sum())
        assert chi_square < CHI_SQUARE_7_DF_AT_0_001, (position, counts.tolist(), expected.tolist())


@torch.no_grad()
def _exact_token_distributions(hf, prompt: list[int]) -> dict[int, torch.Tensor]:
    """The marginal distribution of the 2nd and 3rd generated tokens, summed over every path."""

    def next_probs(prefixes: torch.Tensor) -> torch.Tensor:
        return hf(prefixes).logits[:, -1].double().softmax(-1)

    base = torch.tensor([prompt])
    p1 = next_probs(base)[0]  # [8]
    firsts = torch.cat([base.repeat(8, 1), torch.arange(8)[:, None]], dim=1)
    p2 = next_probs(firsts)  # [t1, t2]
    seconds = torch.cat([firsts.repeat_interleave(8, 0), torch.arange(8).repeat(8)[:, None]], dim=1)
    p3 = next_probs(seconds).view(8, 8, 8)  # [t1, t2, t3]
    joint2 = p1[:, None] * p2
    return {1: joint2.sum(0), 2: (joint2[:, :, None] * p3).sum((0, 1))}


@pytest.mark.parametrize("method", METHODS)
def test_constrained_requests_draft_within_their_grammar_and_say_the_same(plain, speculating, smollm_tokenizer, method):
    from shoal.runtime.structured.spec import JSON_SCHEMA, StructuredOutput
    from tests.runtime.test_structured_outputs import SCHEMAS

    speculative = speculating(method)
    ask = smollm_tokenizer.apply_chat_template(
        [{"role": "user", "content": "Describe a person as JSON."}], add_generation_prompt=True, tokenize=False
    )
    prompt = smollm_tokenizer.encode(ask, add_special_tokens=False)
    accepted_before = speculative.engine.stats().drafts.num_accepted_tokens
    for name, schema in SCHEMAS.items():
        structured = StructuredOutput(JSON_SCHEMA, json.dumps(schema))
        sampling = SamplingParams(temperature=0, max_tokens=120, structured=structured)
        outputs = []
        for built in (plain, speculative):
            grammar, _ = built.grammars.compile(structured)
            built.engine.add_request(name, prompt, sampling, grammar=grammar)
            tokens = []
            while built.engine.has_unfinished():
                tokens += [t for o in built.engine.step().outputs for t in o.new_token_ids]
            outputs.append(tokens)
        assert outputs[1] == outputs[0], name
        jsonschema.validate(json.loads(smollm_tokenizer.decode(outputs[1], skip_special_tokens=True)), schema)
    assert speculative.engine.stats().drafts.num_accepted_tokens > accepted_before
