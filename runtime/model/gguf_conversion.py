"""GGUF checkpoints are converted once into an HF directory (safetensors, config, tokenizer).

Reading a GGUF file through transformers dequantizes every tensor in Python (about 20 s for the
135M default on two cores); the converted directory loads in well under a second, for us and for
HF transformers alike. The cache lives in $SHOAL_CACHE_DIR (default ~/.cache/shoal).
"""

import os
import shutil
import tempfile
from pathlib import Path

from safetensors.torch import save_file


def cache_root() -> Path:
    return Path(os.environ.get("SHOAL_CACHE_DIR") or Path.home() / ".cache" / "shoal")


def converted_gguf_dir(gguf_path: Path) -> Path:
    """The HF directory for a GGUF file, converting it on first use (safe against concurrent starts)."""
    stat = gguf_path.stat()
    target = cache_root() / "gguf" / f"{gguf_path.stem}-{stat.st_size}-{int(stat.st_mtime)}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        _convert(gguf_path, staging)
        os.rename(staging, target)  # atomic; fails if another process got there first
    except OSError:
        if not (target / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _convert(gguf_path: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, name = str(gguf_path.parent), gguf_path.name
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name)
    tied = bool(model.config.tie_word_embeddings)
    tensors = {k: v.contiguous() for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = model.config
    del config.quantization_config  # the tensors are plain float now
    config.to_json_file(str(out / "config.json"))
    AutoTokenizer.from_pretrained(directory, gguf_file=name).save_pretrained(str(out))
