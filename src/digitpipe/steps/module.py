"""The classifier running its own optimizer steps, several per Lightning batch, eagerly or graphed."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from digitpipe.lightning_compat import count_logged_steps, step_counted
from digitpipe.metric_names import TRAIN_LOSS_STEP
from digitpipe.models.classifier import DigitClassifier
from digitpipe.steps.runners import EagerStep, GraphedStep

log = logging.getLogger(__name__)


class SteppedClassifier(DigitClassifier):
    """DigitClassifier under Lightning's manual optimization: each Lightning batch is a list of the
    loader's batches (steps/batches.py), stepped in order by an EagerStep or a GraphedStep.

    What it records is what the automatic path records for the same batches: the global step
    counts every update, the loggers' step axis is updates, `train/loss_step` is logged at every
    log_every_n_steps-th update with its own step and epoch, and the epoch metrics come from the
    same torchmetrics. Its checkpoints are DigitClassifier's (the same hyperparameters).
    """

    def __init__(self, *args: Any, graphed: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.automatic_optimization = False
        self.graphed = graphed
        self.runner: EagerStep | GraphedStep | None = None

    def on_fit_start(self) -> None:
        self.runner = None  # built at the first step, on this fit's optimizer

    def training_step(self, batches: Any, batch_idx: int) -> torch.Tensor:
        """The updates of `batches`, in order; returns their mean loss."""
        batches = batches if isinstance(batches, list) else [batches]
        optimizer = self.optimizers()
        if self.runner is None:
            self.runner = (GraphedStep if self.graphed else EagerStep)(self, optimizer.optimizer)
            how = "CUDA graph replays" if self.graphed else "eager"
            log.info("optimizer steps: %s, %d per Lightning batch", how, len(batches))
        first = self.global_step
        losses, logits = [], []
        for images, labels in batches:
            loss, out = step_counted(optimizer, lambda i=images, y=labels: self.runner(i, y))
            losses.append(loss)
            logits.append(out)
        targets = torch.cat([labels for _, labels in batches])
        sizes = torch.tensor([len(labels) for _, labels in batches], device=targets.device)
        losses = torch.stack(losses)
        self.train_loss.update(losses, weight=sizes)
        self.train_acc.update(torch.cat(logits), targets)
        self._log_loss_steps(first, losses)
        count_logged_steps(self.trainer, len(batches) - 1)
        return losses.mean()

    def _log_loss_steps(self, first: int, losses: torch.Tensor) -> None:
        """TRAIN_LOSS_STEP at the steps the automatic path logs it (every log_every_n_steps-th), with
        the step and epoch Lightning would log it with."""
        every = self.trainer.log_every_n_steps
        due = [i for i in range(len(losses)) if every and (first + i + 1) % every == 0]
        if due:
            values = losses[due].tolist()  # one host sync for the group, where a step is due
            for i, value in zip(due, values, strict=True):
                if not math.isfinite(value):  # DivergenceGuard stops the training; nothing is logged
                    break
                for logger in self.loggers:
                    logger.log_metrics({TRAIN_LOSS_STEP: value, "epoch": self.current_epoch}, step=first + i)
        self.log(TRAIN_LOSS_STEP, losses[-1], prog_bar=True, logger=False)
