"""A tiny Llama config (no weights, no tokenizer) for runtimes served with --load-format dummy."""

from pathlib import Path


def save_tiny_llama(path: Path) -> Path:
    from transformers import LlamaConfig

    LlamaConfig(
        vocab_size=256,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    ).save_pretrained(path)
    return path
