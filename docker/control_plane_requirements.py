"""Prints what `shoal router` and `shoal operator` need from pyproject.toml's dependencies: all of
them but the runtime's model stack.

torch and the rest are hard dependencies of the one `shoal` package, yet neither command imports
them (tests/images checks it), so the router and operator images install shoal with --no-deps and
these lines, at the versions pyproject asks for. A dependency added to pyproject reaches those
images unless it is named here.

    python docker/control_plane_requirements.py pyproject.toml > requirements.txt
"""

import re
import sys
import tomllib

RUNTIME_ONLY = frozenset({"torch", "transformers", "gguf", "accelerate", "safetensors", "jinja2"})


def control_plane_requirements(pyproject: str) -> list[str]:
    with open(pyproject, "rb") as f:
        dependencies = tomllib.load(f)["project"]["dependencies"]
    return [d for d in dependencies if re.match(r"[A-Za-z0-9._-]+", d)[0].lower() not in RUNTIME_ONLY]


if __name__ == "__main__":
    print("\n".join(control_plane_requirements(sys.argv[1])))
