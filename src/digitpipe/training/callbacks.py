"""Callbacks that write what DVC tracks and what MLflow shows, from rank 0 only."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from digitpipe import io as atomic
from digitpipe.tracking import file_md5, flatten_config

HISTORY_COLUMNS = ("epoch", "train/loss", "train/acc", "val/loss", "val/acc")


class EpochHistory(L.Callback):
    """Rewrites a per-epoch CSV (for `dvc plots`) after every epoch."""

    def __init__(self, path: Path) -> None:
        self.path, self.rows = path, []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # runs after the epoch's validation, when train/* hold the epoch means
        metrics = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch + 1}
        row |= {k: round(float(metrics[k]), 6) for k in HISTORY_COLUMNS[1:] if k in metrics}
        self.rows.append(row)
        self._write()

    @rank_zero_only
    def _write(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic.write_text(self.path, buffer.getvalue())


class RunMetadata(L.Callback):
    """Logs the config (flat params + YAML), model summary and dataset hash into the MLflow run.

    It runs at fit start, after prepare_data: a run whose data could not be prepared is never created.
    """

    def __init__(self, cfg: DictConfig, summary: str, dataset: Path) -> None:
        self.cfg, self.summary, self.dataset = cfg, summary, dataset

    @rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        logger = trainer.logger
        logger.log_hyperparams(flatten_config(self.cfg))
        client, run_id = logger.experiment, logger.run_id
        client.log_text(run_id, OmegaConf.to_yaml(self.cfg, resolve=True), "config.yaml")
        client.log_text(run_id, self.summary, "model_summary.txt")
        client.set_tag(run_id, "data.md5", file_md5(self.dataset))
