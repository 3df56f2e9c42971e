"""What DVC tracks and MLflow shows besides Lightning's own logging, written by rank 0 only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from digitpipe import io as atomic
from digitpipe.tracking import file_md5, flatten_config

HISTORY_COLUMNS = ("epoch", "train/loss", "train/acc", "val/loss", "val/acc", "train/lr")


class EpochHistoryLogger(Logger):
    """A logger that keeps one row per epoch and rewrites a CSV for `dvc plots` after each update.

    A logger, not a callback: loggers get the epoch metrics after every hook has logged them.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.rows: dict[int, dict[str, float]] = {}

    @property
    def name(self) -> str:
        return "history"

    @property
    def version(self) -> str:
        return "0"

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if "epoch" not in metrics or not any(k in metrics for k in HISTORY_COLUMNS[1:]):
            return
        epoch = int(metrics["epoch"]) + 1
        row = self.rows.setdefault(epoch, {"epoch": epoch})
        row |= {k: round(float(v), 6) for k, v in metrics.items() if k in HISTORY_COLUMNS[1:]}
        rows = (self.rows[epoch] for epoch in sorted(self.rows))
        atomic.write_text(self.path, atomic.csv_text(rows, HISTORY_COLUMNS))


class RunMetadata(L.Callback):
    """Logs the config (flat params + YAML), model summary and dataset hash into the MLflow run.

    It runs at fit start, after prepare_data: a run whose data could not be prepared is never created.
    """

    def __init__(self, cfg: DictConfig, dataset: Path) -> None:
        self.cfg, self.dataset = cfg, dataset

    @rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        logger = trainer.logger
        logger.log_hyperparams(flatten_config(self.cfg))
        client, run_id = logger.experiment, logger.run_id
        client.log_text(run_id, OmegaConf.to_yaml(self.cfg, resolve=True), "config.yaml")
        client.log_text(run_id, pl_module.summary(), "model_summary.txt")
        client.set_tag(run_id, "data.md5", file_md5(self.dataset))
        client.set_tag(
            run_id, "device.type", type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
        )
        client.set_tag(run_id, "device.count", str(trainer.world_size))


class SystemMetrics(L.Callback):
    """MLflow's CPU/memory/disk/network (and NVIDIA GPU) sampling into the run while it trains.

    Samples come from `mlflow.system_metrics` and appear as `system/...` metrics beside the
    training curves. Only global rank 0 samples, so multi-node runs show the first node's figures.
    """

    def __init__(self, interval_s: float, tracking_uri: str) -> None:
        self.interval_s, self.tracking_uri, self.monitor = interval_s, tracking_uri, None

    @rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        self.monitor = SystemMetricsMonitor(
            trainer.logger.run_id, sampling_interval=self.interval_s, tracking_uri=self.tracking_uri
        )
        self.monitor.start()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, err: BaseException) -> None:
        self._stop()  # no sampling thread outlives a failed or interrupted fit

    def _stop(self) -> None:
        if self.monitor is not None:
            self.monitor.finish()  # joins the thread and flushes the last samples
            self.monitor = None
