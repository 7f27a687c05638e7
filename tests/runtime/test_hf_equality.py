"""Greedy outputs equal HF transformers' generate token for token, under continuous batching with
staggered arrivals, chunked prefill forced by a small token budget, and shared prompt prefixes."""

import os

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from shoal.runtime.sampling.params import SamplingParams
from tests.runtime.engine_harness import build, hf_greedy, run_to_completion

pytestmark = pytest.mark.integration

MAX_NEW_TOKENS = 20
DOCUMENT = (
    "Shoal runs fleets of language-model servers on Kubernetes. Each pool has a stable revision and, "
    "during a rollout, a canary revision that receives a small share of the traffic. The router measures "
    "latency and errors for both, and if the canary is worse it moves all traffic back to the stable "
    "revision within seconds. Realtime requests are served before batch requests, and every tenant has "
    "a limit on concurrent requests and tokens per minute."
)
QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "List three prime numbers.",
    "Translate 'good morning' into Spanish.",
    "What is 12 times 12?",
    "Name a famous painter.",
    "Explain photosynthesis in one sentence.",
    "Give me a synonym for happy.",
]
DOCUMENT_QUESTIONS = [
    "What does the router do when the canary is worse?",
    "Which requests are served first?",
    "What limits does every tenant have?",
    "What is a pool made of?",
]
RAW_TEXTS = ["Hello", "The quick brown fox", "def fibonacci(n):\n", DOCUMENT + " In short,"]


def chat(tokenizer, content: str) -> list[int]:
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
    )
    return tokenizer.encode(text, add_special_tokens=False)


@pytest.fixture(scope="module")
def smollm_prompts(smollm_tokenizer) -> list[list[int]]:
    prompts = [chat(smollm_tokenizer, q) for q in QUESTIONS]
    prompts += [chat(smollm_tokenizer, DOCUMENT + "\n\n" + q) for q in DOCUMENT_QUESTIONS]
    prompts += [smollm_tokenizer.encode(t) for t in RAW_TEXTS]
    assert len(prompts) == 16
    return prompts


@pytest.mark.parametrize("async_scheduling", [False, True], ids=["sync", "async-scheduling"])
def test_smollm2_greedy_matches_hf_with_staggered_chunked_and_shared_prefill(
    smollm_dir, smollm_hf, smollm_prompts, async_scheduling
):
    built = build(smollm_dir, max_num_batched_tokens=32, max_num_seqs=16, async_scheduling=async_scheduling)
    engine = built.engine
    outputs = run_to_completion(
        engine, smollm_prompts, SamplingParams(temperature=0, max_tokens=MAX_NEW_TOKENS), [3 * i for i in range(16)]
    )
    eos = list(built.info.eos_token_ids)
    for prompt, output in zip(smollm_prompts, outputs, strict=True):
        assert output == hf_greedy(smollm_hf, prompt, MAX_NEW_TOKENS, eos)
    stats = engine.stats()
    # Every chat prompt after the first found the chat template's system prompt in the cache.
    shared_blocks = len(os.path.commonprefix(smollm_prompts[:12])) // 16
    assert shared_blocks >= 1
    assert stats.prefix_cache_hits >= 11 * shared_blocks * 16
    assert stats.kv_blocks_free == stats.kv_blocks_total
    assert "Paris" in built.tokenizer.decode(outputs[0])


# Small but real: GQA (4 query heads on 2 KV heads), two layers, decisive random logits.
TINY_SHAPE = dict(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
    initializer_range=0.2,
)


def tiny_llama(path):
    config = LlamaConfig(
        **TINY_SHAPE,
        tie_word_embeddings=True,
        rope_parameters={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
            "rope_theta": 500000.0,
        },
    )
    return LlamaForCausalLM(config)


def tiny_qwen2(path):
    config = Qwen2Config(
        **TINY_SHAPE,
        tie_word_embeddings=False,
        rope_parameters={
            "rope_type": "yarn",
            "factor": 4.0,
            "original_max_position_embeddings": 256,
            "rope_theta": 10000.0,
        },
    )
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():  # HF initialises biases to zero; make them matter
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0, 0.2)
    return model


@pytest.mark.parametrize("async_scheduling", [False, True], ids=["sync", "async-scheduling"])
@pytest.mark.parametrize("make_model", [tiny_llama, tiny_qwen2], ids=["llama-gqa-llama3-rope", "qwen2-gqa-bias-yarn"])
def test_random_weight_gqa_models_match_hf(tmp_path, make_model, async_scheduling):
    torch.manual_seed(0)
    hf_model = make_model(tmp_path).eval()
    hf_model.save_pretrained(tmp_path)
    generator = torch.Generator().manual_seed(1)
    shared = torch.randint(3, 512, (40,), generator=generator).tolist()
    prompts = [shared + torch.randint(3, 512, (n,), generator=generator).tolist() for n in (1, 7, 20, 60)]
    prompts += [torch.randint(3, 512, (n,), generator=generator).tolist() for n in (2, 5, 33, 90, 130, 17, 64, 9)]
    built = build(tmp_path, block_size=4, max_num_batched_tokens=24, async_scheduling=async_scheduling)
    outputs = run_to_completion(
        built.engine, prompts, SamplingParams(temperature=0, max_tokens=16), [2 * i for i in range(12)]
    )
    for prompt, output in zip(prompts, outputs, strict=True):
        assert output == hf_greedy(hf_model, prompt, 16, eos_token_id=2)
    assert built.engine.stats().prefix_cache_hits > 0
