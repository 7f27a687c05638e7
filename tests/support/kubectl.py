"""kubectl against the test cluster, run without blocking the event loop."""

import asyncio
import json
from pathlib import Path
from typing import Any


class KubectlError(Exception):
    pass


async def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    """kubectl's stdout; KubectlError (with its stderr) when it fails."""
    process = await asyncio.create_subprocess_exec(
        "kubectl",
        "--kubeconfig",
        str(kubeconfig),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate(stdin.encode() if stdin is not None else None)
    if process.returncode != 0:
        raise KubectlError(f"kubectl {' '.join(args)} exited {process.returncode}: {stderr.decode()}")
    return stdout.decode()


async def kubectl_json(kubeconfig: Path, *args: str) -> Any:
    return json.loads(await kubectl(kubeconfig, *args, "-o", "json"))
