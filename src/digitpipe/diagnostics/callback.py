"""The diagnostics callback: gradient norms per layer, dead units, saturation, time per step."""

from __future__ import annotations

import statistics
import time
from typing import Any

import lightning as L
from lightning.pytorch.utilities import grad_norm

from digitpipe.diagnostics.probe import SATURATING, unit_statistics, weight_layers

COLUMNS = ("step", "epoch", "metric", "layer", "value")  # one measurement per row (tidy)


def metric_key(metric: str, layer: str) -> str:
    """The MLflow and history name: diag/grad_norm/conv1, diag/dead/conv2, diag/step_ms."""
    return f"diag/{metric}/{layer}" if layer else f"diag/{metric}"


class Diagnostics(L.Callback):
    """The measures behind the seed's activation argument, for one training.

    - grad_norm: L2 norm of each weight layer's gradient (Lightning's grad_norm), at every optimizer
      step up to `detail_steps` (the seed's "slow start"), then every `every_n_steps` steps.
    - dead / saturated: `probe.unit_statistics` on the first `probe_size` validation images, at
      initialisation (epoch 0) and after every epoch; saturation for sigmoid and tanh only.
    - step_ms: the median wall time of a training step (forward, backward, optimizer) per epoch.

    Epoch-level measures are logged like any epoch metric (MLflow and the history CSV); the step-level
    ones and the initial probe go to the run in batches. `records` holds them all (COLUMNS), and
    the checkpoint carries them, so a resumed training keeps its earlier measurements.
    """

    def __init__(
        self,
        activation: str,
        every_n_steps: int,
        detail_steps: int,
        probe_size: int,
        saturation_threshold: float,
    ) -> None:  # the settings: conf/diagnostics/on.yaml
        self.saturating = activation in SATURATING
        self.every_n_steps, self.detail_steps = every_n_steps, detail_steps
        self.probe_size, self.threshold = probe_size, saturation_threshold
        self.records: list[dict[str, Any]] = []
        self.unsent: list[tuple[str, float, int]] = []  # (key, value, step) for the run, not yet sent
        self._started = 0.0
        self._step_ms: list[float] = []

    # -- the measurements --------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        images = trainer.datamodule.probe_images(self.probe_size)
        self._probe = images.to(pl_module.device)
        if trainer.global_step == 0 and not self.records:  # not a resumed training
            for key, value in self._probe_units(pl_module, step=0, epoch=0).items():
                self.unsent.append((key, value, 0))

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._step_ms.append((time.perf_counter() - self._started) * 1000)

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        step = trainer.global_step + 1  # the update about to be made, counted from 1
        if step > self.detail_steps and step % self.every_n_steps:
            return
        norms = grad_norm(pl_module.net, norm_type=2)
        epoch = trainer.current_epoch + 1
        for layer in weight_layers(pl_module.net):
            value = float(norms[f"grad_2.0_norm/{layer}.weight"])
            self._record(step, epoch, "grad_norm", layer, value)
            self.unsent.append((metric_key("grad_norm", layer), value, step))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch, step = trainer.current_epoch + 1, trainer.global_step
        measured = self._probe_units(pl_module, step, epoch)
        if self._step_ms:
            measured["diag/step_ms"] = statistics.median(self._step_ms)
            self._record(step, epoch, "step_ms", "", measured["diag/step_ms"])
            self._step_ms.clear()
        for key, value in measured.items():  # every rank computes the same: no sync needed
            pl_module.log(key, value, on_step=False, on_epoch=True, rank_zero_only=True)
        self.flush(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.flush(trainer)

    def _probe_units(self, pl_module: L.LightningModule, step: int, epoch: int) -> dict[str, float]:
        threshold = self.threshold if self.saturating else None
        stats = unit_statistics(pl_module, pl_module.net, self._probe, threshold)
        measured = {}
        for metric in stats:
            for layer, value in stats[metric].items():
                self._record(step, epoch, metric, layer, value)
                measured[metric_key(metric, layer)] = value
        return measured

    def _record(self, step: int, epoch: int, metric: str, layer: str, value: float) -> None:
        self.records.append({"step": step, "epoch": epoch, "metric": metric, "layer": layer, "value": value})

    # -- into the run, and into the checkpoint ----------------------------------------------
    def flush(self, trainer: L.Trainer) -> None:
        """Send the step-level measurements to the loggers that take a series (the MLflow run)."""
        if not self.unsent or not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if hasattr(logger, "log_series"):
                logger.log_series(self.unsent)
        self.unsent = []

    def state_dict(self) -> dict[str, Any]:
        return {"records": list(self.records), "unsent": list(self.unsent)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.records = list(state_dict["records"])
        self.unsent = list(state_dict["unsent"])
