"""The shape of a Llama-family model, read once from an HF config and checked."""

from dataclasses import dataclass
from typing import Any

from shoal.runtime.layers.rotary_embedding import RopeConfig

# model_type -> how its attention biases are laid out. SmolLM models are model_type "llama".
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3", "yarn")


@dataclass(frozen=True)
class ModelArchConfig:
    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    max_position_embeddings: int
    rope: RopeConfig
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    sliding_window: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    torch_dtype: str | None = None

    def __post_init__(self) -> None:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.rope.rope_type not in SUPPORTED_ROPE_TYPES:
            raise ValueError(f"rope type {self.rope.rope_type!r} is not supported; supported: {SUPPORTED_ROPE_TYPES}")

    @property
    def q_size(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_key_value_heads * self.head_dim

    def kv_bytes_per_token(self, dtype_size: int) -> int:
        return 2 * self.num_hidden_layers * self.kv_size * dtype_size

    @classmethod
    def from_hf(cls, hf_config: Any) -> "ModelArchConfig":
        """From a transformers PretrainedConfig (v4 or v5 field names)."""
        model_type = getattr(hf_config, "model_type", None)
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"model_type {model_type!r} is not supported; supported: {SUPPORTED_MODEL_TYPES}")
        num_heads = hf_config.num_attention_heads
        head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // num_heads
        attention_bias = bool(getattr(hf_config, "attention_bias", False))
        # Qwen2 always has q/k/v biases and no o_proj bias; Llama's attention_bias covers all four.
        qkv_bias = model_type == "qwen2" or attention_bias
        use_window = getattr(hf_config, "use_sliding_window", model_type == "mistral")
        window = getattr(hf_config, "sliding_window", None) if use_window else None
        eos = getattr(hf_config, "eos_token_id", None)
        eos_ids = tuple(eos) if isinstance(eos, (list, tuple)) else (() if eos is None else (eos,))
        # transformers v5 names it dtype and warns on torch_dtype; v4 has only torch_dtype.
        dtype = getattr(hf_config, "dtype" if hasattr(hf_config, "dtype") else "torch_dtype", None)
        return cls(
            model_type=model_type,
            vocab_size=hf_config.vocab_size,
            hidden_size=hf_config.hidden_size,
            intermediate_size=hf_config.intermediate_size,
            num_hidden_layers=hf_config.num_hidden_layers,
            num_attention_heads=num_heads,
            num_key_value_heads=getattr(hf_config, "num_key_value_heads", None) or num_heads,
            head_dim=head_dim,
            rms_norm_eps=hf_config.rms_norm_eps,
            max_position_embeddings=hf_config.max_position_embeddings,
            rope=_rope_from_hf(hf_config),
            tie_word_embeddings=bool(getattr(hf_config, "tie_word_embeddings", False)),
            qkv_bias=qkv_bias,
            o_bias=attention_bias and model_type != "qwen2",
            mlp_bias=bool(getattr(hf_config, "mlp_bias", False)),
            sliding_window=window,
            eos_token_ids=eos_ids,
            torch_dtype=str(dtype).removeprefix("torch.") if dtype is not None else None,
        )


def _rope_from_hf(hf_config: Any) -> RopeConfig:
    # transformers v5 keeps everything in rope_parameters; v4 splits rope_theta and rope_scaling.
    params = dict(getattr(hf_config, "rope_parameters", None) or getattr(hf_config, "rope_scaling", None) or {})
    theta = params.pop("rope_theta", None) or getattr(hf_config, "rope_theta", None) or 10000.0
    rope_type = params.pop("rope_type", None) or params.pop("type", None) or "default"
    if "partial_rotary_factor" in params and params["partial_rotary_factor"] != 1.0:
        raise ValueError("partial rotary embeddings are not supported")
    params.setdefault("original_max_position_embeddings", hf_config.max_position_embeddings)
    return RopeConfig(theta=float(theta), rope_type=rope_type, params=params)
