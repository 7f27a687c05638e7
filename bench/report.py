"""What every benchmark records beside its numbers: the machine, and where the result files go."""

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

import torch
import transformers

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def describe_machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    machine = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "gpu": None,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        machine["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1)}
    return machine


def git_commit() -> str:
    """HEAD's short hash; SHOAL_GIT_COMMIT where the tree travelled without its .git (a lent GPU)."""
    if os.environ.get("SHOAL_GIT_COMMIT"):
        return os.environ["SHOAL_GIT_COMMIT"]
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_report(name: str, payload: dict, markdown: str, results_dir: Path = RESULTS_DIR) -> tuple[Path, Path]:
    """Writes <name>.json (everything, machine and time included) and <name>.md (the table)."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stamped = {
        "measured_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "machine": describe_machine(),
        **payload,
    }
    json_path, md_path = results_dir / f"{name}.json", results_dir / f"{name}.md"
    json_path.write_text(json.dumps(stamped, indent=2) + "\n")
    machine = _machine_line(stamped["machine"])
    header = f"_Measured {stamped['measured_at']} at commit {stamped['git_commit']} on {machine}._\n\n"
    md_path.write_text(markdown.rstrip() + "\n\n" + header)
    return json_path, md_path


def _machine_line(machine: dict) -> str:
    gpu = f", GPU {machine['gpu']['name']}" if machine["gpu"] else ", no GPU"
    return f"{machine['cpu']} ({machine['cpu_count']} cores){gpu}, torch {machine['torch']}"


def markdown_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
