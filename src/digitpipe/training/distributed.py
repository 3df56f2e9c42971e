"""What changes when one training runs as several processes (DDP), kept out of the stage code."""

from __future__ import annotations

import os
import sys

import torch.distributed as dist

from digitpipe.errors import ConfigError

BATCH_SCOPES = ("global", "per_device")
LAUNCHED_ENV = "DIGITPIPE_LAUNCHED_BY"  # set for the ranks Lightning's launcher starts: its PID
# Hydra flags that select the config; everything else on a multirun's command line is the sweep
CONFIG_FLAGS = ("-cd", "--config-dir", "-cn", "--config-name", "-cp", "--config-path")


def per_device_batch_size(batch_size: int, world_size: int, scope: str) -> int:
    """The batch each process loads: global batches are split evenly across processes."""
    if scope not in BATCH_SCOPES:
        raise ConfigError(f"distributed.batch_scope={scope!r} must be one of: {', '.join(BATCH_SCOPES)}")
    if scope == "per_device":
        return batch_size
    if batch_size % world_size:
        raise ConfigError(
            f"data.batch_size={batch_size} is a global batch and does not split evenly over {world_size} "
            f"processes; use a multiple of {world_size}, or distributed.batch_scope=per_device"
        )
    return batch_size // world_size


def scaled_lr(lr: float, world_size: int, scale: bool) -> float:
    """The linear scaling rule: with N times the samples per step, N times the learning rate."""
    return lr * world_size if scale else lr


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


def prepare_launch() -> bool:
    """Make Lightning's ddp launcher re-run only this job; True if this process launches the ranks."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    launcher = "LOCAL_RANK" not in os.environ and "MASTER_PORT" not in os.environ
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        sys.argv = pin_argv_to_current_job(sys.argv, list(HydraConfig.get().overrides.task))
    if launcher:
        os.environ[LAUNCHED_ENV] = str(os.getpid())  # inherited by the ranks it starts, if any
    return launcher


def release_launch(launcher: bool) -> None:
    """After a fit this process launched: free the process group and port for the next sweep job."""
    if launcher:
        os.environ.pop(LAUNCHED_ENV, None)
    if launcher and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        for key in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "NODE_RANK", "LOCAL_RANK"):
            os.environ.pop(key, None)
