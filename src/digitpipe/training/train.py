"""The train stage: config in, a trained model, its MLflow run and its metrics out."""

from __future__ import annotations

import time
from dataclasses import dataclass

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger
from omegaconf import DictConfig

from digitpipe import io as atomic
from digitpipe import tracking
from digitpipe.config import validate
from digitpipe.data.datamodule import DigitsDataModule
from digitpipe.data.preprocess import ensure_dataset
from digitpipe.models.classifier import DigitClassifier
from digitpipe.paths import resolve
from digitpipe.training.callbacks import EpochHistoryLogger, RunMetadata

MONITOR = "val/acc"


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    best_checkpoint: str
    metrics: dict[str, float]


def build_model(cfg: DictConfig) -> DigitClassifier:
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    return DigitClassifier(
        activation=cfg.model.activation,
        negative_slope=cfg.model.negative_slope,
        num_classes=cfg.data.num_classes,
        image_size=cfg.data.image_size,
        init=cfg.model.init,
        optimizer=instantiate(cfg.optimizer),
        scheduler=scheduler,
    )


def build_datamodule(cfg: DictConfig) -> DigitsDataModule:
    d = cfg.data
    return DigitsDataModule(
        resolve(cfg.paths.dataset), d.batch_size, d.eval_batch_size, d.normalize,
        prepare=lambda: ensure_dataset(cfg),
    )  # fmt: skip


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    return [instantiate(spec) for spec in (cfg.get("callbacks") or {}).values()]


def build_logger(cfg: DictConfig) -> MLFlowLogger:
    uri = tracking.tracking_uri(cfg.mlflow.tracking_uri)
    tracking.check_reachable(uri)
    return MLFlowLogger(
        experiment_name=cfg.mlflow.experiment_name,
        run_name=tracking.run_name(cfg),
        tracking_uri=uri,
        tags=tracking.run_tags(),
        artifact_location=tracking.artifact_location(uri),
    )


def train(cfg: DictConfig) -> TrainResult:
    validate(cfg)
    L.seed_everything(cfg.seed, workers=True)
    model, datamodule, logger = build_model(cfg), build_datamodule(cfg), build_logger(cfg)
    summary = model.summary()
    print(summary)
    model_dir = resolve(cfg.paths.model_dir)
    checkpoint = ModelCheckpoint(
        dirpath=model_dir, filename="best", monitor=MONITOR, mode="max", enable_version_counter=False
    )
    # Lightning's save_last only re-saves when a new best was saved; this one saves every epoch
    last = ModelCheckpoint(dirpath=model_dir, filename="last", enable_version_counter=False)
    callbacks = [
        checkpoint,
        last,
        RunMetadata(cfg, summary, resolve(cfg.paths.dataset)),
        *build_callbacks(cfg),
    ]
    history = EpochHistoryLogger(resolve(cfg.paths.history))
    trainer = L.Trainer(
        **cfg.trainer, logger=[logger, history], callbacks=callbacks, enable_model_summary=False
    )
    started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    metrics = {
        k: float(v) for k, v in trainer.callback_metrics.items() if "/" in k and not k.endswith("_step")
    }
    metrics |= {
        "best/val_acc": float(checkpoint.best_model_score),
        "fit_seconds": time.perf_counter() - started,
    }
    result = TrainResult(logger.run_id, checkpoint.best_model_path, metrics)
    if trainer.is_global_zero:
        write_outputs(cfg, result, logger)
        if cfg.mlflow.log_checkpoint:
            for path in (checkpoint.best_model_path, last.best_model_path):
                logger.experiment.log_artifact(logger.run_id, path, "checkpoints")
    return result


def write_outputs(cfg: DictConfig, result: TrainResult, logger: MLFlowLogger) -> None:
    """The train stage's DVC outputs: metrics JSON and the MLflow run evaluate logs into."""
    atomic.write_json(resolve(cfg.paths.train_metrics), {k: round(v, 6) for k, v in result.metrics.items()})
    run_info = {"run_id": result.run_id, "experiment_id": logger.experiment_id}
    atomic.write_json(resolve(cfg.paths.run_info), run_info)
