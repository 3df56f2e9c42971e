"""A callback that stops a fit whose loss is no longer finite (signals: lightning_compat.StopOnSignal)."""

from __future__ import annotations

import lightning as L
import torch

from digitpipe.errors import DivergedError


class DivergenceGuard(L.Callback):
    """Stop at a non-finite training loss, with one line, before anything is saved.

    The check needs the loss on the host; to spare accelerators a sync every step, losses are
    combined on the device and looked at once per log_every_n_steps steps (at the batch that
    reaches the next multiple, which with several steps per batch may pass it) and before each
    epoch's checkpoint.
    """

    def __init__(self) -> None:
        self.finite: torch.Tensor | None = None
        self.checked_window = 0  # global_step // log_every_n_steps at the last check

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx):
        finite = torch.isfinite(outputs["loss"].detach())
        self.finite = finite if self.finite is None else self.finite & finite
        window = trainer.global_step // max(trainer.log_every_n_steps, 1)
        if window > self.checked_window:
            self.checked_window = window
            self._check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)  # before ModelCheckpoint saves the epoch (it runs after this hook)

    def _check(self, trainer: L.Trainer) -> None:
        if self.finite is None or bool(self.finite):
            return
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        raise DivergedError(
            f"training diverged: the training loss became NaN or infinite by step {trainer.global_step} "
            f"(epoch {trainer.current_epoch + 1}, learning rate {lr:g}); lower optimizer.lr or change "
            "the optimizer. No checkpoint of it is kept and the run is marked FAILED"
        )
