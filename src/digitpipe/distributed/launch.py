"""What a DDP training does around its fit: the ranks Lightning's launcher starts re-run only this
job, with rank 0's resume decision; a rank whose collective fails because another is gone says so in
one line; afterwards the process group is freed for a sweep's next job."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import torch.distributed as dist

from digitpipe.environment import RESUME_CHECKPOINT
from digitpipe.errors import RankFailed

# Hydra flags that select the config; everything else on a multirun's command line is the sweep
CONFIG_FLAGS = ("-cd", "--config-dir", "-cn", "--config-name", "-cp", "--config-path")


@contextlib.contextmanager
def launched(global_rank: int, checkpoint: Path | None) -> Iterator[None]:
    """Around the fit (and test) of a training in several processes. Which rank died, and when the
    others stop, is the engine's to see and do: Lightning's launcher kills every process 5 s after
    a rank fails, torchrun's agent and SLURM (--kill-on-bad-exit) SIGTERM the others at once.

    Lightning's launcher starts ranks 1..N-1 from this process's command line and environment:
    narrowed to this job inside a sweep, with this process's decision to resume `checkpoint`."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    launcher = "LOCAL_RANK" not in os.environ and "MASTER_PORT" not in os.environ
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        sys.argv = pin_argv_to_current_job(sys.argv, list(HydraConfig.get().overrides.task))
    if launcher:  # inherited by the ranks it starts
        os.environ[RESUME_CHECKPOINT] = str(checkpoint or "")
    try:
        yield
    except RuntimeError as err:  # a collective fails at once when a peer's process is gone
        if lost := lost_peer(err):
            raise RankFailed(f"DDP rank {global_rank} lost another rank ({lost})") from err
        raise
    if launcher and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()  # its port free for a sweep's next job (environment.restored
        # puts back the variables Lightning set for it)


def pin_argv_to_current_job(argv: list[str], task_overrides: list[str]) -> list[str]:
    """The command line for this Hydra job alone: config flags plus the job's own overrides.

    Lightning's ddp launcher starts the other ranks as `python <script> <sys.argv[1:]>`; inside a
    Hydra multirun that argv is the whole sweep (`-m a=1,2`), so every rank would start a sweep of
    its own (Lightning #11300, Hydra #2070).
    """
    kept = [argv[0]]
    args = iter(argv[1:])
    for arg in args:
        if arg in CONFIG_FLAGS:
            kept += [arg, next(args, "")]
        elif arg.startswith(tuple(f"{flag}=" for flag in CONFIG_FLAGS)):
            kept.append(arg)
    return kept + list(task_overrides)


def lost_peer(err: BaseException) -> str | None:
    """The first line of a collective's error that says another rank is gone, else None."""
    text = str(err)
    gone = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")
    if said := next((words for words in gone if words in text), None):
        return said
    if isinstance(err, dist.DistError):
        return text.strip().splitlines()[0][:120] if text.strip() else type(err).__name__
    return None
