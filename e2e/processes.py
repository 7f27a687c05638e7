"""Shoal's own commands (`shoal router`, `shoal operator`) as processes of the local e2e, started
and awaited without blocking the event loop the test runs on."""

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp

from tests.support.control_plane import tail
from tests.support.local_node import SHOAL  # this venv's `shoal`, as the local node runs it for pods


@contextlib.asynccontextmanager
async def shoal_process(
    args: list[str], *, log: Path, ready_url: str, env: Mapping[str, str] | None = None, timeout_s: float = 60
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`shoal ARGS...`, its output in `log`, yielded once `ready_url` answers 200; SIGTERM on exit
    (SIGKILL after 30 s). RuntimeError, with the log's tail, if it exits or never gets ready."""
    with open(log, "ab") as output:
        process = await asyncio.create_subprocess_exec(
            SHOAL,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    try:
        await _wait_ready(process, ready_url, timeout_s, log)
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _wait_ready(process: asyncio.subprocess.Process, url: str, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise RuntimeError(f"`shoal` exited with {process.returncode} before it was ready:\n{tail(log)}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout_s:g}s:\n{tail(log)}")
