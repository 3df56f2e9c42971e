"""Errors a user can cause, and the one place that turns them into a clear CLI exit."""

from __future__ import annotations

import contextlib
import functools
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from digitpipe.interrupts import Interrupted

T = TypeVar("T")


class UserError(Exception):
    """A problem the user can fix; its message says what is wrong and how to fix it."""

    exit_code = 2


class ConfigError(UserError):
    """A configuration value is invalid."""


class DataError(UserError):
    """Input data is missing, corrupt or malformed."""


class DownloadError(DataError):
    """No mirror could deliver a verified file."""


class OutputError(UserError):
    """An output cannot be written (permissions, a read-only file system, a full disk)."""


class TrackingError(UserError):
    """The MLflow store is unreachable, stopped answering, or holds something unexpected."""

    store_answers = False  # True: a local write failed (a full disk) while the store still answers


class DivergedError(UserError):
    """Training produced a non-finite loss or weights."""


class RankFailed(UserError):
    """Another process of a DDP training stopped; this one reports it and stops too."""

    exit_code = 1


def exit_on_user_error(func: Callable[..., T]) -> Callable[..., T]:
    """Print a UserError as one line on stderr and exit with status 2 instead of a traceback;
    an interrupted stage says so in one line and exits 128 + the signal number (130, 143)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except UserError as err:
            discard_silent_hydra_run()
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(err.exit_code)
        except Interrupted as stop:
            print(f"stopped: {stop}", file=sys.stderr, flush=True)
            sys.exit(stop.exit_code)

    return wrapper


def discard_silent_hydra_run() -> None:
    """A refused `python src/<stage>.py` leaves no Hydra run directory (outputs/<date>/<time>/):
    Hydra makes it before the stage's checks run. Only one that holds nothing but Hydra's own
    .hydra/ and empty logs is removed, with the folders above it in the working directory that
    are then empty (outputs/<date>/, outputs/)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.RUN:
        return
    run = Path(HydraConfig.get().runtime.output_dir)
    entries = list(run.iterdir()) if run.is_dir() else []
    if not all(e.name == ".hydra" or (e.suffix == ".log" and e.stat().st_size == 0) for e in entries):
        return  # a log with something in it, or a directory also used for other things: kept
    shutil.rmtree(run, ignore_errors=True)
    for parent in run.resolve().parents:
        if parent == Path.cwd().resolve() or Path.cwd().resolve() not in parent.parents:
            break
        with contextlib.suppress(OSError):
            parent.rmdir()  # only if empty
