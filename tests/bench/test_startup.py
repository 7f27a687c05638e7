"""bench/startup.py, CI-sized: a tiny random-weight model on the CPU, served with the warm-up asked
for, two runs and a restart. Behaviour, not timings: the report holds both starts with the runtime's
phases, both runs with every token, and no kernel compiled (nothing compiles on a CPU)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tiny_llama import save_tiny_llama

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]


def test_startup_bench_reports_both_starts_their_phases_and_both_runs(tmp_path):
    model = save_tiny_llama(tmp_path / "tiny-llama")
    command = [sys.executable, "bench/startup.py", "--model", str(model), "--load-format", "dummy"]
    command += ["--device", "cpu", "--warmup", "--num-requests", "6", "--input-len", "20", "--output-len", "5"]
    command += ["--max-num-seqs", "8", "--max-num-batched-tokens", "64", "--kv-cache-memory", "8MiB"]
    command += ["--results-dir", str(tmp_path), "--name", "startup"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "startup.json").read_text())
    assert [s["label"] for s in report["starts"]] == ["first start", "restart, same cache"]
    for start in report["starts"]:
        assert list(start["phases"]) == ["import", "model_load", "kv_cache", "warmup", "total"]
        assert 0 < start["phases"]["total"] < start["ready_s"] + 0.5  # the runtime's count, and the bench's
        assert start["kernels_compiled"] == 0
    assert [r["output_tokens"] for r in report["runs"]] == [30, 30]
    assert report["first_over_second"] > 0 and "--warmup" in report["runtime_flags"]
    assert "First run / second run" in (tmp_path / "startup.md").read_text()
