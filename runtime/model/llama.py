"""The Llama family (Llama, SmolLM, Mistral, Qwen2): RMSNorm, RoPE, GQA attention, SwiGLU MLP.

Tokens of all sequences in a step are flattened into one [num_tokens, hidden] batch; only attention
needs to know where one sequence ends (AttentionMetadata). Parameter names follow HF checkpoints,
except q/k/v and gate/up, which are merged into one matmul each.
"""

from collections.abc import Iterable

import torch
from torch import nn

from shoal.runtime.layers.attention import AttentionBackend, AttentionMetadata, PagedAttention
from shoal.runtime.layers.layernorm import RMSNorm
from shoal.runtime.layers.linear import MergedLinear
from shoal.runtime.layers.ops import LayerOps
from shoal.runtime.layers.rotary_embedding import RotaryEmbedding
from shoal.runtime.model.arch_config import ModelArchConfig

# checkpoint name fragment -> (merged module name fragment, shard index)
_MERGED_SHARDS = {
    ".q_proj.": (".qkv_proj.", 0),
    ".k_proj.": (".qkv_proj.", 1),
    ".v_proj.": (".qkv_proj.", 2),
    ".gate_proj.": (".gate_up_proj.", 0),
    ".up_proj.": (".gate_up_proj.", 1),
}


class LlamaAttention(nn.Module):
    def __init__(self, arch: ModelArchConfig, rotary: RotaryEmbedding, backend: AttentionBackend):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = (
            arch.num_attention_heads,
            arch.num_key_value_heads,
            arch.head_dim,
        )
        self.qkv_proj = MergedLinear(arch.hidden_size, [arch.q_size, arch.kv_size, arch.kv_size], bias=arch.qkv_bias)
        self.o_proj = nn.Linear(arch.q_size, arch.hidden_size, bias=arch.o_bias)
        self.rotary = rotary
        self.attn = PagedAttention(self.num_heads, self.num_kv_heads, self.head_dim, backend)

    def forward(self, positions: torch.Tensor, hidden: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        num_tokens = hidden.shape[0]
        q, k, v = self.qkv_proj(hidden).split(self.qkv_proj.output_sizes, dim=-1)
        q = q.view(num_tokens, self.num_heads, self.head_dim)
        k = k.view(num_tokens, self.num_kv_heads, self.head_dim)
        v = v.view(num_tokens, self.num_kv_heads, self.head_dim)
        q, k = self.rotary(positions, q, k)
        out = self.attn(q, k, v, meta)
        return self.o_proj(out.reshape(num_tokens, self.num_heads * self.head_dim))


class LlamaMLP(nn.Module):
    def __init__(self, arch: ModelArchConfig, ops: LayerOps):
        super().__init__()
        size = arch.intermediate_size
        self.gate_up_proj = MergedLinear(arch.hidden_size, [size, size], bias=arch.mlp_bias)
        self.down_proj = nn.Linear(size, arch.hidden_size, bias=arch.mlp_bias)
        self.ops = ops

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.ops.silu_and_mul(self.gate_up_proj(x)))


class LlamaDecoderLayer(nn.Module):
    """Carries the residual stream beside the hidden state, so each residual add fuses with the
    norm after it (HF: h = x + attn(norm(x)); out = h + mlp(norm(h)), the same arithmetic)."""

    def __init__(self, arch: ModelArchConfig, rotary: RotaryEmbedding, backend: AttentionBackend, ops: LayerOps):
        super().__init__()
        self.input_layernorm = RMSNorm(arch.hidden_size, arch.rms_norm_eps, ops)
        self.self_attn = LlamaAttention(arch, rotary, backend)
        self.post_attention_layernorm = RMSNorm(arch.hidden_size, arch.rms_norm_eps, ops)
        self.mlp = LlamaMLP(arch, ops)

    def forward(
        self, positions: torch.Tensor, hidden: torch.Tensor, residual: torch.Tensor | None, meta: AttentionMetadata
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if residual is None:
            residual, hidden = hidden, self.input_layernorm(hidden)
        else:
            hidden, residual = self.input_layernorm(hidden, residual)
        hidden = self.self_attn(positions, hidden, meta)
        hidden, residual = self.post_attention_layernorm(hidden, residual)
        return self.mlp(hidden), residual


class LlamaModel(nn.Module):
    """The decoder stack. A pipeline stage (parallel/pipeline_stage.py) builds it without the ends
    it does not run, the embedding (all but the first stage) or the final norm (all but the last):
    those are None, never allocated."""

    def __init__(
        self,
        arch: ModelArchConfig,
        backend: AttentionBackend,
        ops: LayerOps,
        max_position: int,
        with_embedding: bool = True,
        with_norm: bool = True,
    ):
        super().__init__()
        self.embed_tokens = nn.Embedding(arch.vocab_size, arch.hidden_size) if with_embedding else None
        rotary = RotaryEmbedding(arch.rope, arch.head_dim, max_position, ops)
        self.layers = nn.ModuleList(
            LlamaDecoderLayer(arch, rotary, backend, ops) for _ in range(arch.num_hidden_layers)
        )
        self.norm = RMSNorm(arch.hidden_size, arch.rms_norm_eps, ops) if with_norm else None

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        hidden, residual = self.forward_layers(positions, self.embed_tokens(input_ids), None, meta)
        hidden, _ = self.norm(hidden, residual)
        return hidden

    def forward_layers(
        self, positions: torch.Tensor, hidden: torch.Tensor, residual: torch.Tensor | None, meta: AttentionMetadata
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder layers alone, from the hidden state and residual stream (None before the first
        layer) to the same pair after the last: a pipeline stage starts and stops here."""
        for layer in self.layers:
            hidden, residual = layer(positions, hidden, residual, meta)
        return hidden, residual


class LlamaForCausalLM(nn.Module):
    def __init__(
        self,
        arch: ModelArchConfig,
        backend: AttentionBackend,
        ops: LayerOps,
        max_position: int,
        with_embedding: bool = True,
        with_head: bool = True,
    ):
        """`with_embedding`/`with_head` False leave out the embedding, or the final norm and LM head
        (None): a pipeline stage that does not run them."""
        super().__init__()
        if arch.tie_word_embeddings and not (with_embedding and with_head):
            raise ValueError("tied word embeddings need both the embedding and the LM head in the model")
        self.arch = arch
        self.model = LlamaModel(arch, backend, ops, max_position, with_embedding, with_norm=with_head)
        self.lm_head = nn.Linear(arch.hidden_size, arch.vocab_size, bias=False) if with_head else None
        if arch.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        """Hidden states of every token: [num_tokens, hidden]."""
        return self.model(input_ids, positions, meta)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden).float()

    def allocate_kv_caches(
        self, num_blocks: int, block_size: int, dtype: torch.dtype, device: torch.device
    ) -> list[torch.Tensor]:
        """One [2, num_blocks, block_size, kv_heads, head_dim] cache per layer, bound to its attention."""
        shape = (2, num_blocks, block_size, self.arch.num_key_value_heads, self.arch.head_dim)
        caches = [torch.zeros(shape, dtype=dtype, device=device) for _ in self.model.layers]
        for layer, cache in zip(self.model.layers, caches, strict=True):
            layer.self_attn.attn.kv_cache = cache
        return caches

    def release_kv_caches(self) -> None:
        for layer in self.model.layers:
            layer.self_attn.attn.kv_cache = torch.empty(0)

    def checkpoint_targets(self) -> dict[str, torch.Tensor]:
        """Each checkpoint (HF) tensor name -> the tensor it is copied into: a parameter, or the slice
        of a merged q/k/v or gate/up parameter that holds it. A tied LM head has no target of its own."""
        targets = {}
        for name, param in self.named_parameters():
            module_name, kind = name.rsplit(".", 1)
            module = self.get_submodule(module_name)
            if isinstance(module, MergedLinear):
                for fragment, (merged, shard) in _MERGED_SHARDS.items():
                    if merged in name:
                        targets[name.replace(merged, fragment)] = module.shard(shard, is_bias=kind == "bias")
            else:
                targets[name] = param.data
        if self.arch.tie_word_embeddings:
            targets.pop("lm_head.weight", None)
        return targets

    @torch.no_grad()
    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy checkpoint tensors (HF names) into the model; every target must be covered."""
        targets = self.checkpoint_targets()
        missing = set(targets)
        for name, tensor in weights:
            if "rotary_emb.inv_freq" in name or (name == "lm_head.weight" and self.arch.tie_word_embeddings):
                continue
            if name not in targets:
                raise ValueError(f"checkpoint tensor {name!r} has no place in the model")
            if targets[name].shape != tensor.shape:
                raise ValueError(f"{name}: expected shape {tuple(targets[name].shape)}, got {tuple(tensor.shape)}")
            targets[name].copy_(tensor)
            missing.discard(name)
        if missing:
            raise ValueError(f"the checkpoint lacks {len(missing)} tensors, e.g. {sorted(missing)[:3]}")
