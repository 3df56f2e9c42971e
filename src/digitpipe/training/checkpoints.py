"""A training's checkpoints while it runs: a directory per run, and what each checkpoint carries."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from filelock import FileLock, Timeout
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn

from digitpipe.errors import DataError, DivergedError, OutputError
from digitpipe.tracking.model import non_finite_tensors
from digitpipe.training.history import EpochHistoryLogger, epoch_row

LAST, BEST = "last.ckpt", "best.ckpt"
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

    def claim(self) -> FileLock:
        """Hold the directory for this process (released by the OS when it dies, even by SIGKILL)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.lock)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise DataError(f"{self.path} is in use by another training that is still running") from None
        return lock

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


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RunState(L.Callback):
    """What a checkpoint carries besides the weights: its run (so evaluate logs into the right one),
    the config and code that made it (so a resume of something else is refused), the epoch history
    and the random streams (so a resumed training goes on exactly as an uninterrupted one would).

    A checkpoint with non-finite weights is never written: saving one stops the training.
    """

    def __init__(self, run_id: str | None, identity: dict[str, Any], history: EpochHistoryLogger) -> None:
        self.run_id, self.identity, self.history = run_id, identity, history

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if bad := non_finite_tensors(checkpoint["state_dict"]):
            raise DivergedError(
                f"training diverged: the weights hold NaN or infinity ({', '.join(bad[:3])}) "
                f"at epoch {trainer.current_epoch + 1}; lower optimizer.lr or change the optimizer"
            )
        epoch = trainer.current_epoch + 1  # saved at the end of this epoch: its metrics are complete
        rows = self.history.rows | {
            epoch: self.history.rows.get(epoch, {}) | epoch_row(epoch, trainer.callback_metrics)
        }
        checkpoint[RUN_KEY] = {
            "run_id": self.run_id,
            "identity": self.identity,
            "history": [rows[e] for e in sorted(rows)],
            "step": trainer.global_step,
            "rng": rng_state(),
        }

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if trainer.state.fn != TrainerFn.FITTING:
            return  # testing the best checkpoint: not a resume
        state = checkpoint[RUN_KEY]
        set_rng_state(state["rng"])
        self.history.restore(state["history"])


class VerifiedCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, except that a checkpoint it could not write stops the training
    (Lightning swallows a PermissionError and carries on without one)."""

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        before = _identity(filepath)
        super()._save_checkpoint(trainer, filepath)
        if trainer.is_global_zero and _identity(filepath) in (None, before):
            raise OutputError(f"could not write {filepath}; check that {Path(filepath).parent} is writable")


def _identity(path: str) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def checkpoint_callbacks(run_dir: RunDir, monitor: str) -> tuple[ModelCheckpoint, ModelCheckpoint]:
    """best.ckpt by `monitor`, and last.ckpt every epoch (Lightning's save_last only re-saves when
    a new best was saved)."""
    new: Callable[..., ModelCheckpoint] = VerifiedCheckpoint
    best = new(
        dirpath=run_dir.path, filename="best", monitor=monitor, mode="max", enable_version_counter=False
    )
    last = new(dirpath=run_dir.path, filename="last", enable_version_counter=False)
    return best, last
