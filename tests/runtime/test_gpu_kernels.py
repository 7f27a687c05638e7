"""Triton kernels against the torch reference backend on random ragged batches (GPU only).

Tolerances, as ||out - ref|| / ||ref||: float32 inputs use IEEE dot products and must agree within
1e-5; bfloat16 inputs within 1e-2 of a float32 reference computed from the same bf16 cache.
"""

import random

import pytest
import torch

pytestmark = pytest.mark.gpu
if not torch.cuda.is_available():
    pytest.skip("needs CUDA", allow_module_level=True)

from shoal.runtime.kernels.kv_cache_write import write_kv  # noqa: E402
from shoal.runtime.kernels.paged_attention import PagedBatch  # noqa: E402
from shoal.runtime.layers.attention_torch import TorchAttentionBackend  # noqa: E402
from shoal.runtime.layers.attention_triton import TritonAttentionBackend  # noqa: E402
from shoal.runtime.worker.batch_inputs import BatchInputs  # noqa: E402

CUDA = torch.device("cuda")
SHAPES = [(32, 8, 128), (14, 2, 64), (9, 3, 64), (8, 8, 64)]  # Llama-3-8B, Qwen2.5-0.5B, SmolLM2, MHA


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


def poison_allocator(shape, dtype):
    """Leaves NaNs where the next allocation of this size will land, so unwritten outputs show."""
    torch.full(shape, float("nan"), dtype=dtype, device=CUDA)


def random_batch(
    rng: random.Random, num_decodes: int, prefills: list[tuple[int, int]], block_size: int, num_blocks: int
) -> BatchInputs:
    """prefills: (context already cached, new query tokens). Block ids are a random permutation."""
    free_blocks = list(range(num_blocks))
    rng.shuffle(free_blocks)
    batch = BatchInputs(num_decodes=num_decodes)
    sequences = [(rng.randint(1, 3000), 1) for _ in range(num_decodes)] + prefills
    for context, new in sequences:
        total = context + new
        blocks = [free_blocks.pop() for _ in range(-(-total // block_size))]
        batch.input_ids.extend([0] * new)
        batch.positions.extend(range(context, total))
        batch.slot_mapping.extend(blocks[p // block_size] * block_size + p % block_size for p in range(context, total))
        batch.query_start_loc.append(batch.query_start_loc[-1] + new)
        batch.seq_lens.append(total)
        batch.block_tables.append(blocks)
    return batch


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("heads", "kv_heads", "head_dim"), SHAPES)
def test_paged_attention_matches_the_torch_reference(dtype, heads, kv_heads, head_dim):
    rng = random.Random(heads * 1000 + head_dim)
    block_size, num_blocks = 16, 2048
    cases = [
        (0, [(0, 1), (0, 37), (0, 300)]),  # prefill from scratch, including a one-token prompt
        (5, [(64, 20), (100, 129)]),  # decodes + chunked prefill over cached blocks (prefix hits)
        (3, []),  # decodes only, long contexts: several key splits
        (1, [(1, 1), (15, 2), (16, 16)]),  # block boundaries
    ]
    triton_backend = TritonAttentionBackend(heads, kv_heads, head_dim, block_size, dtype, CUDA)
    for num_decodes, prefills in cases:
        batch = random_batch(rng, num_decodes, prefills, block_size, num_blocks)
        kv_cache = torch.randn((2, num_blocks, block_size, kv_heads, head_dim), dtype=dtype, device=CUDA)
        query = torch.randn((batch.num_tokens, heads, head_dim), dtype=dtype, device=CUDA)
        _, _, meta = batch.to_device(CUDA)
        scale = head_dim**-0.5
        reference = TorchAttentionBackend().attend(query.float(), kv_cache.float(), meta, scale)
        poison_allocator(query.shape, dtype)
        out = triton_backend.attend(query, kv_cache, meta, scale)
        assert not out.isnan().any()
        limit = 1e-5 if dtype == torch.float32 else 1e-2
        assert relative_error(out, reference) < limit, (num_decodes, prefills)


def test_decode_splits_agree_with_a_single_pass():
    rng = random.Random(7)
    backend = TritonAttentionBackend(32, 8, 128, 16, torch.bfloat16, CUDA)
    batch = random_batch(rng, 2, [], 16, 1024)
    batch.seq_lens[:] = [4000, 2500]  # long contexts on a tiny batch: many splits
    batch.block_tables[:] = [list(range(250)), list(range(300, 460))]
    kv_cache = torch.randn((2, 1024, 16, 8, 128), dtype=torch.bfloat16, device=CUDA)
    query = torch.randn((2, 32, 128), dtype=torch.bfloat16, device=CUDA)
    _, _, meta = batch.to_device(CUDA)
    split = backend.kernels.forward(
        query, kv_cache, PagedBatch(meta.block_tables, meta.seq_lens, meta.query_start_loc, 2, 2, 0, 16), 0.1
    )
    single = backend.kernels.forward(
        query, kv_cache, PagedBatch(meta.block_tables, meta.seq_lens, meta.query_start_loc, 2, 2, 0, 1), 0.1
    )
    assert relative_error(split, single) < 1e-2
    reference = TorchAttentionBackend().attend(query.float(), kv_cache.float(), meta, 0.1)
    assert relative_error(split, reference) < 1e-2


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kv_write_fills_exactly_the_given_slots_and_skips_minus_one(dtype):
    num_blocks, block_size, kv_heads, head_dim = 64, 16, 8, 128
    cache = torch.randn((2, num_blocks, block_size, kv_heads, head_dim), dtype=dtype, device=CUDA)
    expected = cache.clone()
    slots = torch.randperm(num_blocks * block_size, device=CUDA)[:300]
    slots[::7] = -1
    qkv = torch.randn((300, (32 + 2 * kv_heads) * head_dim), dtype=dtype, device=CUDA)
    # As in the model: the key comes out of the rotary embedding contiguous, the value is a strided view of qkv.
    key = qkv[:, 32 * head_dim : (32 + kv_heads) * head_dim].reshape(300, kv_heads, head_dim).contiguous()
    value = qkv[:, (32 + kv_heads) * head_dim :].view(300, kv_heads, head_dim)
    kept = slots >= 0
    flat = expected.view(2, -1, kv_heads, head_dim)
    flat[0, slots[kept]] = key[kept]
    flat[1, slots[kept]] = value[kept]
    write_kv(cache, key, value, slots)
    assert torch.equal(cache, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("width", [576, 896, 4096])
def test_fused_norms_and_activation_match_torch(dtype, width):
    from shoal.runtime.layers.ops import TorchOps, TritonOps

    torch_ops, triton_ops = TorchOps(), TritonOps()
    limit = 1e-5 if dtype == torch.float32 else 1e-2
    x = torch.randn((37, width), dtype=dtype, device=CUDA)
    residual = torch.randn((37, width), dtype=dtype, device=CUDA)
    weight = torch.randn(width, dtype=dtype, device=CUDA)
    assert relative_error(triton_ops.rms_norm(x, weight, 1e-5), torch_ops.rms_norm(x, weight, 1e-5)) < limit
    expected_out, expected_residual = torch_ops.add_rms_norm(x, residual.clone(), weight, 1e-5)
    out, new_residual = triton_ops.add_rms_norm(x, residual, weight, 1e-5)
    assert new_residual.data_ptr() == residual.data_ptr()  # updated in place
    assert torch.equal(new_residual, expected_residual)
    assert relative_error(out, expected_out) < limit
    gate_up = torch.randn((37, 2 * width), dtype=dtype, device=CUDA)
    assert relative_error(triton_ops.silu_and_mul(gate_up), torch_ops.silu_and_mul(gate_up)) < limit


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("heads", "kv_heads", "head_dim"), SHAPES)
def test_fused_rotary_matches_torch_on_strided_qkv_views(dtype, heads, kv_heads, head_dim):
    from shoal.runtime.layers.ops import TorchOps, TritonOps
    from shoal.runtime.layers.rotary_embedding import RopeConfig, RotaryEmbedding

    rotary = RotaryEmbedding(RopeConfig(theta=500000.0), head_dim, 4096, TorchOps()).to(CUDA)
    tokens = 50
    qkv = torch.randn((tokens, (heads + 2 * kv_heads) * head_dim), dtype=dtype, device=CUDA)
    q = qkv[:, : heads * head_dim].view(tokens, heads, head_dim)
    k = qkv[:, heads * head_dim : (heads + kv_heads) * head_dim].view(tokens, kv_heads, head_dim)
    positions = torch.randint(0, 4096, (tokens,), device=CUDA)
    expected_q, expected_k = TorchOps().rotary(positions, q.clone(), k.clone(), rotary.cos, rotary.sin)
    TritonOps().rotary(positions, q, k, rotary.cos, rotary.sin)
    limit = 1e-6 if dtype == torch.float32 else 1e-2
    assert relative_error(q, expected_q) < limit and relative_error(k, expected_k) < limit
