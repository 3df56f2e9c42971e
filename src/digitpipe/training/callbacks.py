"""Callbacks that write what DVC tracks and what MLflow shows, from rank 0 only."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from digitpipe import io as atomic
from digitpipe.tracking import file_md5

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
    """Logs the resolved config, the model summary and the dataset's hash into the MLflow run."""

    def __init__(self, config_yaml: str, summary: str, dataset: Path) -> None:
        self.config_yaml, self.summary, self.dataset = config_yaml, summary, dataset

    @rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        logger = trainer.logger
        client, run_id = logger.experiment, logger.run_id
        client.log_text(run_id, self.config_yaml, "config.yaml")
        client.log_text(run_id, self.summary, "model_summary.txt")
        client.set_tag(run_id, "data.md5", file_md5(self.dataset))
