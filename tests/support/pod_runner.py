"""One pod's process on the local node: started (in its sandbox, pod_sandbox.py), probed,
restarted as its restartPolicy says, stopped with SIGTERM then SIGKILL, and its status reported
(pod_status.py) whenever it changes.

The restart backoff is shorter than the kubelet's (10 s doubling to 5 min) so that tests see a
crash loop in seconds; everything else follows the kubelet: probe defaults, thresholds, startup
probes holding back liveness and readiness, exit codes 128+signal.
"""

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.node_heartbeat import now
from tests.support.pod_launch import Launch, Probe
from tests.support.pod_status import PodState, exit_code, pod_status

RESTART_BACKOFF_S = (1.0, 2.0, 4.0, 8.0)  # then 8 s on every later restart

log = logging.getLogger(__name__)

Report = Callable[[dict[str, Any]], Awaitable[None]]


class PodRunner:
    """`argv` runs the launch's command in the pod's sandbox; `probes` reaches the pod's address."""

    def __init__(
        self,
        launch: Launch,
        argv: Sequence[str],
        state: PodState,
        *,
        log_path: Path,
        base_env: Mapping[str, str],
        probes: aiohttp.ClientSession,
        report: Report,
    ):
        self._launch = launch
        self._argv = argv
        self._state = state
        self._log_path = log_path
        self._base_env = base_env
        self._probes = probes
        self._report_to = report
        self._reported: dict[str, Any] | None = None
        self._report_lock = asyncio.Lock()
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"pod {self._log_path.stem}")

    async def stop(self, grace_s: float) -> None:
        """Stop supervising, then SIGTERM the container's process group, SIGKILL after grace_s."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._terminate(grace_s)

    async def _run(self) -> None:
        backoff = iter(RESTART_BACKOFF_S)
        while True:
            started_at = now()
            code = await self._run_once(started_at)
            terminated = {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": started_at,
                "finishedAt": now(),
            }
            self._set_ready(False)
            policy = self._launch.restart_policy
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                self._state.phase = "Succeeded" if code == 0 else "Failed"
                self._state.state = {"terminated": terminated}
                await self._report()
                return
            delay = next(backoff, RESTART_BACKOFF_S[-1])
            self._state.last_state = {"terminated": terminated}
            self._state.state = {
                "waiting": {"reason": "CrashLoopBackOff", "message": f"back-off {delay:g}s restarting failed container"}
            }
            await self._report()
            await asyncio.sleep(delay)
            self._state.restart_count += 1

    async def _run_once(self, started_at: str) -> int:
        """Start the process, probe it while it runs; its exit code."""
        with open(self._log_path, "ab") as log_file:  # the child keeps its own descriptor
            spawn = asyncio.ensure_future(
                asyncio.create_subprocess_exec(
                    *self._argv,
                    env={**self._base_env, **self._launch.env},
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,  # its own process group: signals reach its children too
                )
            )
            try:
                self._process = await asyncio.shield(spawn)
            except asyncio.CancelledError:  # stopped while spawning: keep hold of it, for stop()
                self._process = await spawn
                raise
            except OSError as error:  # e.g. no such executable: exits as a shell would
                log_file.write(f"{self._argv[0]}: {error}\n".encode())
                return 127
        self._state.phase = "Running"
        self._state.container_id = f"local-process://{self._process.pid}"
        self._state.state = {"running": {"startedAt": started_at}}
        self._state.started = self._launch.startup is None
        await self._report()
        started = asyncio.Event()
        if self._state.started:
            started.set()
        probes = [asyncio.create_task(self._readiness(self._launch.readiness, started))]
        if self._launch.startup is not None:
            probes.append(asyncio.create_task(self._startup(self._launch.startup, started)))
        if self._launch.liveness is not None:
            probes.append(asyncio.create_task(self._liveness(self._launch.liveness, started)))
        try:
            code = exit_code(await self._process.wait())
            _signal_group(self._process.pid, signal.SIGKILL)
            return code
        finally:
            for task in probes:
                task.cancel()
            await asyncio.gather(*probes, return_exceptions=True)

    async def _startup(self, probe: Probe, started: asyncio.Event) -> None:
        await asyncio.sleep(probe.initial_delay_s)
        if await self._outcome(probe):
            self._state.started = True
            started.set()
            await self._report()
        else:
            await self._terminate(self._launch.grace_s)  # it never started: restart it

    async def _readiness(self, probe: Probe | None, started: asyncio.Event) -> None:
        await started.wait()
        if probe is None:  # without a readiness probe a started container is ready
            self._set_ready(True)
            await self._report()
            return
        await asyncio.sleep(probe.initial_delay_s)
        while True:
            ready = await self._outcome(probe)
            if ready != self._state.ready:
                self._set_ready(ready)
                await self._report()
            await asyncio.sleep(probe.period_s)

    async def _liveness(self, probe: Probe, started: asyncio.Event) -> None:
        await started.wait()
        await asyncio.sleep(probe.initial_delay_s)
        while await self._outcome(probe):
            await asyncio.sleep(probe.period_s)
        log.info("pod %s failed its liveness probe: restarting it", self._log_path.stem)
        await self._terminate(self._launch.grace_s)

    async def _outcome(self, probe: Probe) -> bool:
        """Probe every period until it passes successThreshold times in a row (True) or fails
        failureThreshold times in a row (False)."""
        successes = failures = 0
        while True:
            if await self._check(probe):
                successes, failures = successes + 1, 0
            else:
                successes, failures = 0, failures + 1
            if successes >= probe.success_threshold:
                return True
            if failures >= probe.failure_threshold:
                return False
            await asyncio.sleep(probe.period_s)

    async def _check(self, probe: Probe) -> bool:
        address = self._state.pod_ip
        try:
            async with asyncio.timeout(probe.timeout_s):
                if probe.path is None:
                    _, writer = await asyncio.open_connection(address, probe.port)
                    writer.close()
                    return True
                url = f"http://{address}:{probe.port}{probe.path}"
                async with self._probes.get(url, headers=dict(probe.headers), allow_redirects=False) as response:
                    return 200 <= response.status < 400
        except (OSError, TimeoutError, aiohttp.ClientError):
            return False

    async def _terminate(self, grace_s: float) -> None:
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            _signal_group(process.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace_s):
                    await process.wait()
        _signal_group(process.pid, signal.SIGKILL)
        await process.wait()

    def _set_ready(self, ready: bool) -> None:
        if ready != self._state.ready:
            self._state.ready, self._state.ready_since = ready, now()

    async def _report(self) -> None:
        # Serialised, and built inside the lock: the last write carries the latest state.
        async with self._report_lock:
            status = pod_status(self._state)
            if status != self._reported:
                await self._report_to(status)
                self._reported = status


def _signal_group(pid: int, signum: int) -> None:
    """Signal the container's process group; SIGKILL takes what is left of a container once its
    main process is gone, as a runtime tearing down the container's cgroup would."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)
