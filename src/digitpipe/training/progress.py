"""Progress output that fits where it runs: Lightning's bar on a terminal; one line per epoch where
the output goes to a log (`dvc repro`, CI, a file), which a bar would fill with carriage-return
redraws (about 12 KB per epoch)."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar

from digitpipe.metric_names import TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_LOSS

SHOWN = (TRAIN_LOSS, TRAIN_ACC, VAL_LOSS, VAL_ACC)


def progress_bar(refresh_rate: int, stream: TextIO | None = None) -> ProgressBar:
    """The bar (redrawn every `refresh_rate` steps; 0: no progress output) if `stream` (stderr,
    where the bar draws) is a terminal, else EpochLines."""
    stream = stream or sys.stderr
    if refresh_rate and not stream.isatty():
        return EpochLines()
    return TQDMProgressBar(refresh_rate=refresh_rate)


class EpochLines(ProgressBar):
    """One line per training epoch on stdout: `epoch 2/5: train/loss 0.0487 ... val/acc 0.9876 (34.1 s)`.

    An epoch's metrics are complete only after every epoch-end hook has run, so its line is printed
    when the next epoch starts, or when the training ends.
    """

    def __init__(self) -> None:
        super().__init__()
        self.enabled = True
        self._started = 0.0
        self._pending: tuple[int, float] | None = None  # (epoch counted from 1, its seconds)

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self._print_pending(trainer)
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._pending = (trainer.current_epoch + 1, time.perf_counter() - self._started)

    def on_train_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._print_pending(trainer)

    def _print_pending(self, trainer: L.Trainer) -> None:
        if self._pending is None or not self.enabled:
            return
        epoch, seconds = self._pending
        self._pending = None
        metrics = trainer.callback_metrics
        shown = " ".join(f"{key} {float(metrics[key]):.4f}" for key in SHOWN if key in metrics)
        print(f"epoch {epoch}/{trainer.max_epochs}: {shown} ({seconds:.1f} s)", flush=True)
