"""What a training's checkpoints carry besides the weights, and how they are written."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn

from digitpipe import atomic
from digitpipe.errors import DivergedError, OutputError
from digitpipe.models.checkpoint import non_finite_tensors
from digitpipe.training.history import EpochHistoryLogger, epoch_row
from digitpipe.training.run_dir import RUN_KEY, RunDir


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
    """What a checkpoint carries besides the weights: its run (so a resume continues the right one),
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


def checkpoint_callbacks(run_dir: RunDir, monitor: str) -> tuple[ModelCheckpoint, ModelCheckpoint]:
    """best.ckpt by `monitor`, and last.ckpt every epoch (Lightning's save_last only re-saves when
    a new best was saved)."""
    best = ModelCheckpoint(
        dirpath=run_dir.path, filename="best", monitor=monitor, mode="max", enable_version_counter=False
    )
    last = ModelCheckpoint(dirpath=run_dir.path, filename="last", enable_version_counter=False)
    return best, last


class VerifiedCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, except that a checkpoint that cannot be written stops the
    training in one line (Lightning's logs a PermissionError and trains on without one)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        buffer = io.BytesIO()  # as Lightning's: the archive's name inside does not vary with the path
        torch.save(checkpoint, buffer)
        try:
            atomic.write_bytes(path, buffer.getvalue())
        except OSError as err:
            where, reason = Path(path).parent, err.strerror or str(err)
            raise OutputError(f"could not write {path} ({reason}); check that {where} is writable") from err
