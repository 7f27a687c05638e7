"""A weight update from safetensors files is written one tensor at a time: the process's memory
high-water mark during the update of the embedded model stays under the model's size plus one tensor
(its largest) plus a margin, never the second copy a load-then-swap would take. Measured in a fresh
process with Linux's VmHWM, reset just before the update."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runtime.lifecycle_support import perturbed_weights, save_weights

pytestmark = pytest.mark.integration
MARGIN = 48 << 20
SCRIPT = """
import json, sys
from pathlib import Path
import torch
from shoal.runtime.rank_build import select_kernels
from shoal.runtime.model.arch_config import ModelArchConfig
from shoal.runtime.model.loader import build_model, load_hf_config, materialize, resolve_model_source
from shoal.runtime.model.placement import Placement
from shoal.runtime.model.weight_update import check_update, copy_from_safetensors, safetensors_specs

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

source = materialize(resolve_model_source("default"))
arch = ModelArchConfig.from_hf(load_hf_config(source))
placement = Placement(torch.device("cpu"), torch.float32)
model = build_model(arch, source, select_kernels("torch", arch, 16, placement), placement, 2048)
targets = model.checkpoint_targets()
found = safetensors_specs(Path(sys.argv[1]))
check_update(targets, [spec for _, spec in found], "path", exact_dtype=False)
Path("/proc/self/clear_refs").write_text("5")
before = status("VmRSS")
copy_from_safetensors(targets, found)
print(json.dumps({
    "rss_before": before,
    "hwm": status("VmHWM"),
    "model_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
    "largest_bytes": max(spec.num_bytes for _, spec in found),
    "changed": bool((model.model.norm.weight != 1).any()),
}))
"""


def test_a_layerwise_update_needs_about_one_tensor_more(smollm_dir, tmp_path):
    updated = save_weights(perturbed_weights(smollm_dir), tmp_path / "v2")
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(updated)], capture_output=True, text=True, cwd=Path.cwd(), timeout=300
    )
    assert run.returncode == 0, run.stderr
    measured = json.loads(run.stdout.strip().splitlines()[-1])
    extra = measured["hwm"] - measured["rss_before"]
    assert measured["changed"], "the update was written"
    assert extra < measured["largest_bytes"] * 2 + MARGIN, measured
    assert extra < measured["model_bytes"] / 2, measured  # far from a second copy of the model
