"""The router and operator images hold shoal without the runtime's model stack
(docker/control_plane_requirements.py): `shoal router` and `shoal operator` must start, and every
module of theirs import, with torch, transformers and the rest out of reach."""

import runpy
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = runpy.run_path(str(ROOT / "docker" / "control_plane_requirements.py"))

PROBE = """
import importlib, importlib.abc, pkgutil, sys

class NotInTheImage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"{{name}} is not in the router and operator images")
        return None

sys.meta_path.insert(0, NotInTheImage())
from shoal.cli import main
for command in ("router", "operator"):
    try:
        main([command, "--help"])
    except SystemExit as exit:
        assert exit.code == 0, (command, exit.code)
import shoal.operator, shoal.router
for package in (shoal.router, shoal.operator):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
"""


def test_router_and_operator_import_nothing_their_images_leave_out():
    probe = PROBE.format(blocked=set(REQUIREMENTS["RUNTIME_ONLY"]))
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_their_requirements_are_pyproject_dependencies_less_the_runtime_only_ones():
    requirements = REQUIREMENTS["control_plane_requirements"](str(ROOT / "pyproject.toml"))
    assert "kopf>=1.38" in requirements
    assert "protobuf>=7.35.1,<8" in requirements  # specifiers kept whole
    assert not [r for r in requirements if r.startswith(("torch", "transformers", "gguf", "jinja2"))]
