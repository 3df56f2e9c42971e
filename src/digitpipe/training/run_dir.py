"""A training's directory while it runs: checkpoints/<run id>/, held by the process that trains it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout

from digitpipe.errors import DataError
from digitpipe.train_outputs import BEST, LAST

RUN_KEY = "run"  # checkpoint["run"]: the run id, its identity, history rows and random streams


@dataclass(frozen=True)
class RunDir:
    """checkpoints/<run id>/: a run's checkpoints, history and unsent metrics until it finishes."""

    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def last(self) -> Path:
        return self.path / LAST

    @property
    def best(self) -> Path:
        return self.path / BEST

    @property
    def history(self) -> Path:
        return self.path / "history.csv"

    @property
    def unsent(self) -> Path:
        return self.path / "unsent_metrics.csv"

    @property
    def lock(self) -> Path:
        return self.path.with_name(f"{self.path.name}.lock")  # beside it: Lightning wants it empty

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """The directory held by this process (released by the OS when it dies, even by SIGKILL);
        the lock file goes too once the directory is gone (its training finished)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.lock)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise DataError(f"{self.path} is in use by another training that is still running") from None
        try:
            yield
        finally:
            lock.release()
            if not self.path.exists():
                self.lock.unlink(missing_ok=True)

    def is_held(self) -> bool:
        lock = FileLock(self.lock)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return True
        lock.release()
        return False


def interrupted_runs(root: Path) -> list[RunDir]:
    """Run directories with a last checkpoint and no live owner, the most recent first."""
    if not root.is_dir():
        return []
    dirs = [RunDir(p) for p in root.iterdir() if (p / LAST).is_file()]
    dirs.sort(key=lambda d: d.last.stat().st_mtime, reverse=True)
    return [d for d in dirs if not d.is_held()]


def read_run_state(path: Path) -> dict[str, Any]:
    """The run state a checkpoint carries ({} for one made before checkpoints named their run)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a damaged file
        reason = " ".join(str(err).split())[:120]
        raise DataError(f"{path} is not a readable checkpoint ({reason})") from err
    state = checkpoint.get(RUN_KEY) if isinstance(checkpoint, dict) else None
    return state if isinstance(state, dict) else {}
