"""Every place this project relies on a Lightning internal, fenced here.

Each has a test that fails in seconds when Lightning moves it (tests/unit/test_lightning_compat.py),
and pyproject.toml bounds Lightning to the versions tested. Everything else uses public hooks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import lightning as L
from lightning.pytorch.core.optimizer import LightningOptimizer

from digitpipe import interrupts

T = TypeVar("T")


def step_counted(optimizer: LightningOptimizer, update: Callable[[], T]) -> T:
    """Run `update()`, an optimizer update made outside LightningOptimizer.step (e.g. replayed in a
    CUDA graph), with what that method does around an update: the global step count and the
    profiler's section. Lightning has no public way to count an update it did not make."""
    optimizer._on_before_step()
    result = update()
    optimizer._on_after_step()
    return result


def count_logged_steps(trainer: L.Trainer, steps: int) -> None:
    """Advance the loggers' step axis by `steps` more updates in this Lightning batch (Lightning
    counts one per batch; with several updates per batch, metrics must be logged at their own step)."""
    trainer.fit_loop.epoch_loop._batches_that_stepped += steps


class StopOnSignal(L.Callback):
    """Put this project's SIGINT/SIGTERM handling back after Lightning installs its own, between
    the fit-start hooks and the first batch (its handler broadcasts from inside the handler under
    DDP, so ranks in different collectives wait for each other forever, and it exits 0 on SIGTERM)."""

    def _install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            interrupts.install()

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()
