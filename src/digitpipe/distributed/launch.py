"""What the rank-0 process does around a fit that launches the other ranks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch.distributed as dist

from digitpipe.environment import LAUNCHED_BY, RESUME_CHECKPOINT

# Hydra flags that select the config; everything else on a multirun's command line is the sweep
CONFIG_FLAGS = ("-cd", "--config-dir", "-cn", "--config-name", "-cp", "--config-path")


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


def prepare_launch(checkpoint: Path | None) -> bool:
    """Make Lightning's ddp launcher re-run only this job, with this process's decision to resume
    `checkpoint` (or None); True if this process launches the ranks."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    launcher = "LOCAL_RANK" not in os.environ and "MASTER_PORT" not in os.environ
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        sys.argv = pin_argv_to_current_job(sys.argv, list(HydraConfig.get().overrides.task))
    if launcher:  # inherited by the ranks it starts
        os.environ[LAUNCHED_BY] = str(os.getpid())
        os.environ[RESUME_CHECKPOINT] = str(checkpoint or "")
    return launcher


def release_launch(launcher: bool) -> None:
    """After a fit this process launched: free the process group and its port for the next sweep job
    (the variables Lightning set for it are put back by environment.restored)."""
    if launcher and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
