"""A worker rank's process (rank 1 and up of a parallel runtime): join the groups, build the rank's
model and KV pool alongside rank 0, then run its part of each step rank 0 sends until told to stop.

It exits 0 when stopped, 1 when anything fails (rank 0 gone included);
rank 0 watches for either (ranks/workers.py)."""

import faulthandler
import logging
import multiprocessing
import os
import signal
from dataclasses import dataclass

from shoal.runtime.config import EngineConfig
from shoal.runtime.model.loader import materialize, resolve_model_source
from shoal.runtime.rank_build import build_rank
from shoal.runtime.ranks.groups import join, leave
from shoal.runtime.ranks.step_channel import RunStep, receive
from shoal.runtime.startup import StartupClock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSpec:
    rank: int
    world_size: int
    rendezvous: str  # init_method of torch.distributed, e.g. tcp://127.0.0.1:port
    config: EngineConfig
    log_level: int
    commands: multiprocessing.Queue  # rank 0's StepChannel puts this rank's commands here


def worker_main(spec: WorkerSpec) -> None:
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1`: where a stuck rank waits
    logging.basicConfig(
        level=spec.log_level, format=f"%(asctime)s %(levelname)s rank {spec.rank} %(name)s: %(message)s"
    )
    try:
        config = spec.config
        groups = join(spec.rank, spec.world_size, spec.rendezvous, config.device, config.pipeline_parallel_size)
        source = materialize(resolve_model_source(config.model, config.load_format))
        runner = build_rank(config, source, groups.tp, groups.pipeline, StartupClock()).runner
        log.info("rank %d of %d ready", spec.rank, spec.world_size)
        while isinstance(command := receive(spec.commands), RunStep):
            if groups.pipeline is not None:
                runner.follow_stage(command.step)
            else:
                runner.follow(command.step, groups.tp.broadcast_from_first)
        leave()
    except Exception:
        log.exception("rank %d failed", spec.rank)
        logging.shutdown()
        os._exit(1)
    logging.shutdown()
    # Out without the interpreter's teardown: it would destroy NCCL communicators that CUDA graphs
    # captured collectives on, which hangs (see groups.leave).
    os._exit(0)
