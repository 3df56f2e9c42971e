"""The LightningModule: the convnet, cross-entropy, torchmetrics accuracy, the optimizer.

Lightning runs its optimizer steps (automatic optimization); steps/module.py is the opt-in variant
that runs several per Lightning batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.model_summary import ModelSummary
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from digitpipe.metric_names import LR, SPLITS, TRAIN_LOSS_STEP, metric
from digitpipe.models.convnet import build_convnet
from digitpipe.models.standardize import Standardize

HPARAMS = ("activation", "negative_slope", "num_classes", "image_size", "init", "standardize")


class DigitClassifier(L.LightningModule):
    """Images scaled to [0, 1] in, logits out.

    With `standardize`, inputs are standardised by the training set's pixel mean/std, which the
    datamodule supplies at fit start and the checkpoint keeps (so evaluation, prediction and the
    logged MLflow model all use the statistics the model was trained with). Only primitive
    hyperparameters are saved, so checkpoints load with weights_only=True.
    """

    def __init__(
        self,
        activation: str,
        negative_slope: float,
        num_classes: int,
        image_size: int,
        init: str,
        standardize: bool = False,
        optimizer: Callable[..., Optimizer] | None = None,
        scheduler: Callable[..., LRScheduler] | None = None,
    ) -> None:
        super().__init__()
        # by name: what builds the network, never a subclass's arguments; logger=False: the run gets
        # the whole flattened config instead (RunMetadata)
        self.save_hyperparameters(*HPARAMS, logger=False)
        self.standardize = Standardize() if standardize else nn.Identity()
        self.net = build_convnet(activation, negative_slope, num_classes, init, image_size)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.example_input_array = torch.zeros(1, 1, image_size, image_size)  # the summary's in/out sizes
        # torchmetrics reduce across DDP ranks; attributes, as "train" is taken. The accuracy's input
        # checks are off (a host sync per step on a GPU; the labels are checked when loaded). The
        # mean keeps its NaN check: torchmetrics 1.9's nan_strategy="disable" drops the weights
        for split in SPLITS:
            setattr(self, f"{split}_loss", MeanMetric())
            accuracy = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
            setattr(self, f"{split}_acc", accuracy)

    def setup(self, stage: str) -> None:
        # after the datamodule's setup; a checkpoint restored later overwrites these with its own
        if stage == "fit" and isinstance(self.standardize, Standardize):
            self.standardize.set_statistics(*self.trainer.datamodule.pixel_stats())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.standardize(images))

    def summary(self) -> str:
        """Lightning's: each layer's type, parameters, FLOPs, in and out sizes, and the totals."""
        return str(ModelSummary(self, max_depth=2))

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        # update() per step, log once per epoch: a self.log call is not free beside a step
        getattr(self, f"{split}_loss").update(loss.detach(), weight=len(labels))
        getattr(self, f"{split}_acc").update(logits.detach(), labels)
        return loss

    def _log_epoch(self, split: str) -> None:
        for name in ("loss", "acc"):
            self.log(metric(split, name), getattr(self, f"{split}_{name}"), prog_bar=name == "acc")

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train")
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:  # the steps loggers receive
            self.log(TRAIN_LOSS_STEP, loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def on_train_epoch_start(self) -> None:
        # the rate this epoch trains with, under one name for every optimizer so runs compare in
        # MLflow (Lightning's LearningRateMonitor names it after the class: lr-RMSprop, lr-Adam)
        self.log(LR, self.trainer.optimizers[0].param_groups[0]["lr"], on_step=False, on_epoch=True)

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise RuntimeError("DigitClassifier was built without an optimizer; it can only predict")
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        if getattr(self.scheduler_factory, "keywords", {}).get("total_steps", False) is None:
            # a schedule over the whole training (OneCycleLR): its length in steps, stepped per step
            steps = self.trainer.estimated_stepping_batches
            scheduler = self.scheduler_factory(optimizer, total_steps=steps)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}
