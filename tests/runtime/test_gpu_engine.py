"""The engine on the GPU (Triton kernels, CUDA graphs) against HF transformers on the same GPU."""

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.integration]
if not torch.cuda.is_available():
    pytest.skip("needs CUDA", allow_module_level=True)

from shoal.runtime.sampling.params import SamplingParams  # noqa: E402
from shoal.runtime.worker.batch_inputs import BatchInputs  # noqa: E402
from tests.runtime.engine_harness import build, hf_greedy, run_to_completion  # noqa: E402
from tests.runtime.test_hf_equality import DOCUMENT, QUESTIONS, chat  # noqa: E402

MAX_NEW_TOKENS = 32


@pytest.fixture(scope="module")
def hf_fp32_cuda(smollm_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(smollm_dir), dtype=torch.float32).to("cuda").eval()


def test_smollm2_fp32_greedy_matches_hf_on_the_gpu(smollm_dir, smollm_tokenizer, hf_fp32_cuda):
    prompts = [chat(smollm_tokenizer, q) for q in QUESTIONS] + [
        chat(smollm_tokenizer, DOCUMENT + "\n\n" + q) for q in QUESTIONS
    ]
    built = build(smollm_dir, device="cuda", max_num_batched_tokens=64, kv_cache_memory=1 << 30)
    assert built.engine.runner.decode_graphs is not None
    outputs = run_to_completion(
        built.engine,
        prompts,
        SamplingParams(temperature=0, max_tokens=MAX_NEW_TOKENS),
        [2 * i for i in range(len(prompts))],
    )
    eos = list(built.info.eos_token_ids)
    ties = []
    for prompt, output in zip(prompts, outputs, strict=True):
        expected = hf_greedy(hf_fp32_cuda, prompt, MAX_NEW_TOKENS, eos)
        if output != expected:
            print(f"prompt of {len(prompt)} tokens:\n  hf   {expected}\n  ours {output}")
            ties.append(divergence_gap(hf_fp32_cuda, prompt, expected, output))
    # GPU GEMMs sum in a batch-dependent order, so an exact tie may break either way; a divergence is
    # accepted only where HF's own logits for the two tokens differ by less than float32 noise.
    print(f"divergences at near-ties (HF logit gaps): {ties}")
    assert all(gap < 1e-3 for gap in ties) and len(ties) <= 1
    assert built.engine.stats().prefix_cache_hits > 0


def divergence_gap(model, prompt: list[int], expected: list[int], actual: list[int]) -> float:
    """HF's logit for its own token minus its logit for ours, at the first position they differ."""
    index = next((i for i, (a, b) in enumerate(zip(expected, actual, strict=False)) if a != b), None)
    if index is None:
        return float("inf")  # one stopped early without choosing a different token: not a tie
    with torch.no_grad():
        logits = model(torch.tensor([prompt + expected[:index]], device="cuda")).logits[0, -1]
    return (logits[expected[index]] - logits[actual[index]]).item()


def test_cuda_graph_decodes_equal_eager_decodes(smollm_dir, smollm_tokenizer):
    prompts = [chat(smollm_tokenizer, q) for q in QUESTIONS] * 3  # 24 sequences: a padded graph size
    sampling = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True)
    graphs = run_to_completion(
        build(smollm_dir, device="cuda", dtype="bfloat16", kv_cache_memory=1 << 30).engine, prompts, sampling
    )
    eager = run_to_completion(
        build(smollm_dir, device="cuda", dtype="bfloat16", kv_cache_memory=1 << 30, enforce_eager=True).engine,
        prompts,
        sampling,
    )
    agree = sum(g == e for g, e in zip(graphs, eager, strict=True))
    assert agree == len(prompts)


def test_bf16_logits_are_as_close_to_fp32_as_hf_bf16_is(smollm_dir, smollm_tokenizer, hf_fp32_cuda):
    from transformers import AutoModelForCausalLM

    prompt = chat(smollm_tokenizer, DOCUMENT + "\n\nSummarise this in one line.")
    ids = torch.tensor([prompt], device="cuda")
    with torch.no_grad():
        reference = hf_fp32_cuda(ids).logits[0].double()
        hf_bf16 = AutoModelForCausalLM.from_pretrained(str(smollm_dir), dtype=torch.bfloat16).to("cuda").eval()
        hf_logits = hf_bf16(ids).logits[0].double()
    ours = build(smollm_dir, device="cuda", dtype="bfloat16", kv_cache_memory=1 << 30)
    runner = ours.engine.runner
    n = len(prompt)
    batch = BatchInputs(
        input_ids=list(prompt),
        positions=list(range(n)),
        slot_mapping=list(range(n)),
        query_start_loc=[0, n],
        seq_lens=[n],
        block_tables=[list(range(-(-n // 16)))],
    )
    with torch.inference_mode():
        input_ids, positions, meta = batch.to_device(torch.device("cuda"))
        our_logits = runner.model.compute_logits(runner.model(input_ids, positions, meta)).double()

    def error(x):
        return ((x - reference).norm() / reference.norm()).item()

    assert error(our_logits) < 1.5 * error(hf_logits) + 1e-3
    top1 = (our_logits.argmax(-1) == reference.argmax(-1)).double().mean().item()
    assert top1 > 0.95
