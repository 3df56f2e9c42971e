"""What the MLflow run shows besides Lightning's metrics: config, summary, data, device, system load."""

from __future__ import annotations

import json

import lightning as L
from lightning.pytorch.utilities import rank_zero_only
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
from omegaconf import DictConfig, OmegaConf

from digitpipe.config.steps import StepPlan
from digitpipe.tracking.metadata import flatten_config
from digitpipe.tracking.run import TrackedRun
from digitpipe.tracking.store import store_failures


def training_input(name: str, datamodule) -> DatasetInput:
    """The data a run trained on, as MLflow's dataset input: the processed file, digested by the
    md5 DVC records for it (the run's Overview and the runs table show it under Datasets)."""
    source = json.dumps({"uri": str(datamodule.source.dataset.resolve())})
    dataset = Dataset(name=name, digest=datamodule.data_md5, source_type="local", source=source)
    return DatasetInput(dataset, [InputTag(MLFLOW_DATASET_CONTEXT, "training")])


def log_input(client, run_id: str, dataset: DatasetInput) -> None:
    """The run's dataset, again when another process inserted the same one at once (MLflow checks first)."""
    from mlflow.exceptions import MlflowException

    try:
        client.log_inputs(run_id, [dataset])
    except MlflowException as err:
        if "UNIQUE constraint" not in str(err) and "duplicate key" not in str(err):
            raise
        client.log_inputs(run_id, [dataset])  # the dataset exists now: linked, not inserted


class RunMetadata(L.Callback):
    """Logs the config (flat params + YAML), model summary, the data's DVC md5 and device (with what
    precision and train_step's `auto`s became: `steps`) into a new run.

    It runs at fit start, after prepare_data: a run whose data could not be prepared records nothing.
    A resumed run has them from its first attempt (and MLflow refuses to change a param).
    """

    def __init__(self, run: TrackedRun, cfg: DictConfig, steps: StepPlan) -> None:
        self.run, self.cfg, self.steps = run, cfg, steps

    @rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.run.resumed:
            return
        client, run_id = self.run.store.client, self.run.run_id
        with store_failures(self.run.store.uri, "recording the run's config"):
            trainer.logger.log_hyperparams(flatten_config(self.cfg))
            client.log_text(run_id, OmegaConf.to_yaml(self.cfg, resolve=True), "config.yaml")
            client.log_text(run_id, pl_module.summary(), "model_summary.txt")
            client.set_tag(run_id, "data.md5", trainer.datamodule.data_md5)  # known after setup
            log_input(client, run_id, training_input(self.cfg.data.name, trainer.datamodule))
            device = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
            client.set_tag(run_id, "device.type", device)
            client.set_tag(run_id, "device.count", str(trainer.world_size))
            client.set_tag(run_id, "device.precision", str(trainer.precision))  # what `auto` became
            client.set_tag(run_id, "device.cuda_graph", str(self.steps.cuda_graph).lower())
            client.set_tag(run_id, "device.steps_per_batch", str(self.steps.steps_per_batch))


class SystemMetrics(L.Callback):
    """MLflow's CPU/memory/disk/network (and NVIDIA GPU) sampling into the run while it trains.

    Samples come from `mlflow.system_metrics` and appear as `system/...` metrics beside the
    training curves. Only global rank 0 samples, so multi-node runs show the first node's figures.
    """

    def __init__(self, interval_s: float, run: TrackedRun) -> None:
        self.interval_s, self.run, self.monitor = interval_s, run, None

    @rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        self.monitor = SystemMetricsMonitor(
            self.run.run_id, sampling_interval=self.interval_s, tracking_uri=self.run.store.uri,
            resume_logging=self.run.resumed,  # a resumed run's samples continue its step numbers
        )  # fmt: skip
        self.monitor.start()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, err: BaseException) -> None:
        self._stop()  # no sampling thread outlives a failed or interrupted fit

    def _stop(self) -> None:
        if self.monitor is not None:
            self.monitor.finish()  # joins the thread and flushes the last samples
            self.monitor = None
