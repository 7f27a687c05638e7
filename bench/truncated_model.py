"""A draft model made from a model: its first layers, with the same embeddings, final norm and LM
head, written as an HF directory (config, safetensors, tokenizer). It shares the tokenizer by
construction, and agrees with the whole model more often than an unrelated small model would."""

import json
import re
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

_LAYER = re.compile(r"\.layers\.(\d+)\.")


def write_truncated_copy(source: Path, num_layers: int, dest: Path) -> Path:
    """`dest`, holding `source` (an HF directory with safetensors) cut to its first `num_layers` layers."""
    config = json.loads((source / "config.json").read_text())
    if not 1 <= num_layers <= config["num_hidden_layers"]:
        raise ValueError(f"num_layers must be in [1, {config['num_hidden_layers']}], got {num_layers}")
    dest.mkdir(parents=True, exist_ok=True)
    for file in sorted(source.glob("*.safetensors")):
        kept = {
            name: tensor
            for name, tensor in load_file(str(file)).items()
            if (match := _LAYER.search(name)) is None or int(match.group(1)) < num_layers
        }
        save_file(kept, str(dest / file.name))
    config["num_hidden_layers"] = num_layers
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    for file in source.iterdir():
        if file.suffix != ".safetensors" and file.name != "config.json" and file.is_file():
            shutil.copy(file, dest / file.name)
    return dest
