"""The LightningModule: the convnet, cross-entropy, torchmetrics accuracy, the optimizer."""

from __future__ import annotations

import inspect
import io
import pickle
import re
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from digitpipe.data import SPLITS
from digitpipe.errors import DataError, UserError
from digitpipe.models.convnet import build_convnet
from digitpipe.models.standardize import Standardize
from digitpipe.models.summary import model_summary


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
        # logger=False: the run gets the whole flattened config instead (RunMetadata)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.standardize = Standardize() if standardize else nn.Identity()
        self.net = build_convnet(activation, negative_slope, num_classes, init)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        for split in SPLITS:  # torchmetrics reduce across DDP ranks; attributes, as "train" is taken
            setattr(self, f"{split}_loss", MeanMetric())
            setattr(self, f"{split}_acc", MulticlassAccuracy(num_classes, average="micro"))

    def setup(self, stage: str) -> None:
        # after the datamodule's setup; a checkpoint restored later overwrites these with its own
        if stage == "fit" and isinstance(self.standardize, Standardize):
            self.standardize.set_statistics(*self.trainer.datamodule.pixel_stats())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.standardize(images))

    def summary(self) -> str:
        return model_summary(self.net, (1, self.hparams.image_size, self.hparams.image_size))

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        # update() per step, log once per epoch: a self.log call costs ~1 ms, a tenth of a CPU step
        getattr(self, f"{split}_loss").update(loss.detach(), weight=len(labels))
        getattr(self, f"{split}_acc").update(logits.detach(), labels)
        return loss

    def _log_epoch(self, split: str) -> None:
        for name in ("loss", "acc"):
            self.log(f"{split}/{name}", getattr(self, f"{split}_{name}"), prog_bar=name == "acc")

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train")
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:  # the steps loggers receive
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def on_train_epoch_start(self) -> None:
        # the rate this epoch trains with, under one name for every optimizer so runs compare in
        # MLflow (Lightning's LearningRateMonitor names it after the class: lr-RMSprop, lr-Adam)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=False, on_epoch=True)

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
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}


FIX = "train again (dvc repro, or python src/train.py) or use a checkpoint this project's training saved"


def load_classifier(path: str | Path) -> DigitClassifier:
    """A trained checkpoint on the CPU (weights_only); a bad file is one DataError naming it and the fault."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is missing; train first (dvc repro, or python src/train.py)")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path} cannot be read ({err.strerror}); {FIX}") from err
    if not data:
        raise DataError(f"{path} is empty (0 bytes): no checkpoint was written to it; {FIX}")
    checkpoint = _unpickle(path, data)
    if not isinstance(checkpoint, dict) or not all(
        isinstance(checkpoint.get(key), dict) for key in ("state_dict", "hyper_parameters")
    ):
        held = _names(checkpoint) if isinstance(checkpoint, dict) else f"a {type(checkpoint).__name__}"
        raise DataError(
            f"{path} is not a Lightning checkpoint of this project's model (it holds {held}, where one "
            f"holds state_dict and hyper_parameters); {FIX}"
        )
    _check_weights(path, checkpoint["state_dict"], _expected_weights(path, checkpoint["hyper_parameters"]))
    try:  # Lightning's own loader, for its checkpoint migrations and the module's hooks
        return DigitClassifier.load_from_checkpoint(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (TypeError, ValueError, KeyError, RuntimeError) as err:  # only a crafted file gets here
        raise DataError(f"{path} does not load as this project's model ({_reason(err)}); {FIX}") from err


def _unpickle(path: Path, data: bytes) -> Any:
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of files it then refuses
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # weights-only unpickling fails safely, but in many ways, on arbitrary bytes
        blocked = re.search(r"GLOBAL ([\w.]+)", str(err)) if isinstance(err, pickle.UnpicklingError) else None
        if blocked:
            raise DataError(
                f"{path} holds pickled Python objects ({blocked[1]}), not only weights, and was refused "
                f"because loading them could run code; {FIX}"
            ) from err
        zipped = zipfile.is_zipfile(io.BytesIO(data))  # torch.save writes a zip archive
        what = "is a damaged PyTorch checkpoint" if zipped else "is not a PyTorch checkpoint, or is truncated"
        raise DataError(f"{path} {what}; {FIX}") from err


def _expected_weights(path: Path, hparams: dict) -> dict[str, tuple[int, ...]]:
    """Weight names and shapes of the network `hparams` build, or DataError if they build none."""
    params = inspect.signature(DigitClassifier).parameters
    missing = [n for n, p in params.items() if p.default is p.empty and n not in hparams]
    unknown = [n for n in hparams if n not in params]
    if missing or unknown:
        raise DataError(
            f"{path} is a checkpoint of another model ({_diff(missing, unknown, 'hyper-parameters')}); {FIX}"
        )
    try:
        return {k: tuple(v.shape) for k, v in DigitClassifier(**hparams).state_dict().items()}
    except (UserError, TypeError, ValueError, RuntimeError) as err:
        raise DataError(f"{path} has hyper-parameters that build no network ({_reason(err)}); {FIX}") from err


def _check_weights(path: Path, weights: dict, expected: dict[str, tuple[int, ...]]) -> None:
    found = {k: tuple(v.shape) for k, v in weights.items() if isinstance(v, torch.Tensor)}
    if found.keys() != expected.keys():
        diff = _diff(expected.keys() - found.keys(), found.keys() - expected.keys(), "weights")
        raise DataError(f"{path} holds the weights of another network ({diff}); {FIX}")
    wrong = [k for k in expected if found[k] != expected[k]]
    if wrong:
        k = wrong[0]
        raise DataError(
            f"{path} holds weights of the wrong shape for this network ({len(wrong)} tensor(s); "
            f"{k} is {list(found[k])}, not {list(expected[k])}); {FIX}"
        )


def _diff(lacks: Any, extra: Any, kind: str) -> str:
    faults = [f"it lacks the {kind} {_names(lacks)}"] if lacks else []
    faults += [f"it has {kind} this model does not take: {_names(extra)}"] if extra else []
    return "; ".join(faults)


def _names(names: Any, shown: int = 5) -> str:
    names = sorted(map(str, names))
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _reason(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
