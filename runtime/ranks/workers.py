"""Rank 0's side of a parallel runtime: it starts the other ranks as processes of their own (one per
GPU), joins them, and watches them. A worker that exits while the runtime has not asked
it to is reported at once to whoever listens (the server then stops serving): the other ranks would
otherwise wait for it in their next collective forever. Before the runtime has started (`started`),
nobody listens yet and rank 0 may be waiting for the lost worker to join or to take part in a
collective of the start: the process then exits at once, with the reason in its log."""

import logging
import multiprocessing
import multiprocessing.connection
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from shoal.runtime.config import EngineConfig
from shoal.runtime.ranks.groups import ParallelGroups, join, leave
from shoal.runtime.ranks.step_channel import StepChannel
from shoal.runtime.ranks.worker_main import WorkerSpec, worker_main

log = logging.getLogger(__name__)

STOP_WAIT_S = 10.0  # for a stopped worker to exit before it is killed


class WorkerGroup:
    def __init__(self, processes: list[multiprocessing.Process]):
        self.processes = processes
        self._listeners: list[Callable[[str], None]] = []
        self._stopping = threading.Event()
        self._started = False
        self._watcher = threading.Thread(target=self._watch, name="shoal-rank-watch", daemon=True)
        self._watcher.start()

    def on_exit(self, listener: Callable[[str], None]) -> None:
        """`listener(message)` is called, from the watching thread, when a worker exits unasked."""
        self._listeners.append(listener)

    def started(self) -> None:
        """The runtime is built: from now on a lost worker is reported to the listeners."""
        self._started = True

    def stop(self) -> None:
        """After rank 0 has told them to stop: waits for them, kills what is left."""
        self._stopping.set()
        for process in self.processes:
            process.join(STOP_WAIT_S)
        self.kill()

    def kill(self) -> None:
        self._stopping.set()
        for process in self.processes:
            if process.is_alive():
                process.kill()
                process.join()

    def _watch(self) -> None:
        sentinels = {process.sentinel: rank for rank, process in enumerate(self.processes, start=1)}
        ready = multiprocessing.connection.wait(list(sentinels))
        if self._stopping.is_set():
            return
        rank = sentinels[ready[0]]
        process = self.processes[rank - 1]
        process.join()
        message = f"rank {rank} (pid {process.pid}) exited with code {process.exitcode}"
        log.error("%s: the runtime cannot run a step without it", message)
        if not self._started:
            self.kill()
            os._exit(1)
        for listener in self._listeners:
            listener(message)


@dataclass(frozen=True)
class StartedRanks:
    """Rank 0's view of the other ranks once all have joined."""

    groups: ParallelGroups  # this process's place (rank 0)
    channel: StepChannel  # to send them each step
    workers: WorkerGroup  # to watch and stop them


def start_workers(config: EngineConfig, log_level: int) -> StartedRanks:
    """Ranks 1.. of config.world_size, started and joined with this process as rank 0."""
    world_size = config.world_size
    rendezvous = f"tcp://127.0.0.1:{_free_port()}"
    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    queues = [context.Queue() for _ in range(1, world_size)]
    processes = [
        context.Process(
            target=worker_main,
            args=(WorkerSpec(rank, world_size, rendezvous, config, log_level, queues[rank - 1]),),
            name=f"shoal-rank-{rank}",
            daemon=True,
        )
        for rank in range(1, world_size)
    ]
    for process in processes:
        process.start()
    workers = WorkerGroup(processes)
    try:
        groups = join(0, world_size, rendezvous, config.device, config.pipeline_parallel_size)
    except BaseException:
        workers.kill()
        leave()
        raise
    log.info(
        "%d ranks (tensor parallel %d, pipeline %d), workers %s",
        world_size,
        config.tensor_parallel_size,
        config.pipeline_parallel_size,
        [p.pid for p in processes],
    )
    return StartedRanks(groups, StepChannel(queues), workers)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
