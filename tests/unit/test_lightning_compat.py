"""Each Lightning internal this project relies on (digitpipe/lightning_compat.py) still behaves as
relied on: these fail in seconds on a Lightning release that moved one."""

from __future__ import annotations

import signal

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import Logger
from torch.utils.data import DataLoader, TensorDataset

from digitpipe import interrupts
from digitpipe.lightning_compat import StopOnSignal, count_logged_steps, step_counted


def loader(batches: int = 2) -> DataLoader:
    return DataLoader(TensorDataset(torch.rand(4 * batches, 3), torch.rand(4 * batches, 1)), batch_size=4)


class StepsLogged(Logger):
    """The steps at which the loggers receive each metric."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: dict[str, list[int]] = {}

    name, version = "steps", "0"

    def log_hyperparams(self, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        for key in metrics:
            self.steps.setdefault(key, []).append(step)


class ThreeUpdatesPerBatch(L.LightningModule):
    """Manual optimization with three updates per batch, made outside LightningOptimizer.step."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        for _ in range(3):
            loss = torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])
            optimizer.optimizer.zero_grad()
            loss.backward()
            step_counted(optimizer, optimizer.optimizer.step)
        count_logged_steps(self.trainer, 2)
        self.log("train/loss", loss.detach(), on_step=False, on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_updates_outside_lightnings_step_count_as_global_steps_and_as_the_loggers_steps():
    logged = StepsLogged()
    trainer = L.Trainer(max_epochs=1, logger=logged, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")  # fmt: skip
    trainer.fit(ThreeUpdatesPerBatch(), loader(batches=2))
    assert trainer.global_step == 6  # 2 batches of 3 updates (0 without the hooks)
    assert logged.steps["train/loss"] == [5]  # the epoch's last update (1: one step per batch)


class SignalHandlerSeen(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.handler = signal.getsignal(signal.SIGTERM)


class OneStep(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("reclaimed", [True, False])
def test_lightning_installs_its_sigterm_handler_before_the_hooks_that_take_it_back(reclaimed):
    seen = SignalHandlerSeen()
    callbacks = [seen, StopOnSignal()] if reclaimed else [seen]
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", callbacks=callbacks)  # fmt: skip
    with interrupts.handled():
        trainer.fit(OneStep(), loader(batches=1))
        after = signal.getsignal(signal.SIGTERM)
    assert (seen.handler is interrupts.raise_interrupted) is reclaimed  # else Lightning's own
    assert after is interrupts.raise_interrupted  # Lightning put back the handler it found
