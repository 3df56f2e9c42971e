"""The train stage: config in, a trained model, its MLflow run and its metrics out."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from digitpipe import io as atomic
from digitpipe import tracking
from digitpipe.config import validate
from digitpipe.data.datamodule import DigitsDataModule
from digitpipe.data.preprocess import ensure_dataset
from digitpipe.models.classifier import DigitClassifier
from digitpipe.models.predictor import predictor_from_checkpoint
from digitpipe.paths import resolve
from digitpipe.training.callbacks import EpochHistoryLogger, RunMetadata, SystemMetrics
from digitpipe.training.distributed import (
    per_device_batch_size,
    prepare_launch,
    release_launch,
    scaled_lr,
)
from digitpipe.training.sweep import parent_tags

MONITOR = "val/acc"


@dataclass(frozen=True)
class TrainResult:
    run_id: str | None  # None on DDP ranks other than 0
    best_checkpoint: str
    metrics: dict[str, float]


def build_model(cfg: DictConfig, world_size: int = 1) -> DigitClassifier:
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    lr = scaled_lr(cfg.optimizer.lr, world_size, cfg.distributed.scale_lr)
    return DigitClassifier(
        activation=cfg.model.activation,
        negative_slope=cfg.model.negative_slope,
        num_classes=cfg.data.num_classes,
        image_size=cfg.data.image_size,
        init=cfg.model.init,
        standardize=cfg.data.normalize,
        optimizer=instantiate(cfg.optimizer, lr=lr),
        scheduler=scheduler,
    )


def build_datamodule(cfg: DictConfig, world_size: int = 1) -> DigitsDataModule:
    d = cfg.data
    return DigitsDataModule(
        resolve(cfg.paths.dataset),
        per_device_batch_size(d.batch_size, world_size, cfg.distributed.batch_scope),
        d.eval_batch_size,
        prepare=partial(ensure_dataset, cfg),
    )


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    return [instantiate(spec) for spec in (cfg.get("callbacks") or {}).values()]


def build_logger(cfg: DictConfig) -> MLFlowLogger | None:
    """The run's logger on global rank 0; None on other ranks, which never touch the MLflow store
    (under torchrun all ranks start at once, and would race to create a new sqlite store)."""
    if rank_zero_only.rank != 0:
        return None
    uri = tracking.tracking_uri(cfg.mlflow.tracking_uri)
    tracking.check_reachable(uri)
    return MLFlowLogger(
        experiment_name=cfg.mlflow.experiment_name,
        run_name=tracking.run_name(cfg),
        tracking_uri=uri,
        tags={**tracking.run_tags(), **parent_tags()},
        artifact_location=tracking.artifact_location(uri),
    )


def build_trainer(
    cfg: DictConfig, logger: MLFlowLogger | None
) -> tuple[L.Trainer, ModelCheckpoint, ModelCheckpoint]:
    model_dir = resolve(cfg.paths.model_dir)
    best = ModelCheckpoint(dirpath=model_dir, filename="best", monitor=MONITOR, mode="max",
                           enable_version_counter=False)  # fmt: skip
    # Lightning's save_last only re-saves when a new best was saved; this one saves every epoch
    last = ModelCheckpoint(dirpath=model_dir, filename="last", enable_version_counter=False)
    callbacks = [best, last, RunMetadata(cfg, resolve(cfg.paths.dataset)), *build_callbacks(cfg)]
    if cfg.mlflow.system_metrics_interval_s:
        uri = tracking.tracking_uri(cfg.mlflow.tracking_uri)
        callbacks.append(SystemMetrics(cfg.mlflow.system_metrics_interval_s, uri))
    loggers = [x for x in (logger, EpochHistoryLogger(resolve(cfg.paths.history))) if x is not None]
    trainer_kwargs = instantiate(cfg.trainer, _convert_="all")  # a strategy node becomes an object
    trainer = L.Trainer(**trainer_kwargs, logger=loggers, callbacks=callbacks, enable_model_summary=False)
    return trainer, best, last


def train(cfg: DictConfig) -> TrainResult:
    validate(cfg)
    L.seed_everything(cfg.seed, workers=True)
    logger = build_logger(cfg)
    trainer, best, last = build_trainer(cfg, logger)
    model = build_model(cfg, trainer.world_size)
    datamodule = build_datamodule(cfg, trainer.world_size)
    if trainer.is_global_zero:
        print(model.summary())
    launcher = prepare_launch()
    started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    metrics = epoch_metrics(trainer)
    metrics |= {"best/val_acc": float(best.best_model_score), "fit_seconds": time.perf_counter() - started}
    checkpoints = (best.best_model_path, last.best_model_path)
    if cfg.test_after_fit:  # every rank tests its shard; torchmetrics reduce across ranks
        trainer.test(model, datamodule=datamodule, ckpt_path=best.best_model_path, weights_only=True)
        metrics |= epoch_metrics(trainer)
    result = TrainResult(logger.run_id if logger else None, best.best_model_path, metrics)
    if trainer.is_global_zero:
        finish_run(cfg, logger, result, checkpoints, datamodule)
    release_launch(launcher)
    return result


def finish_run(
    cfg: DictConfig,
    logger: MLFlowLogger,
    result: TrainResult,
    checkpoints: tuple[str, str],
    data: DigitsDataModule,
) -> None:
    """Rank 0, after fit: DVC outputs, checkpoints and the deployable model into the MLflow run."""
    write_outputs(cfg, result, logger)
    if cfg.mlflow.log_checkpoint:
        for path in checkpoints:
            logger.experiment.log_artifact(logger.run_id, path, "checkpoints")
    if cfg.mlflow.log_model:
        model = predictor_from_checkpoint(result.best_checkpoint)
        example = data.splits["val"].images[:4].float().numpy()
        uri = tracking.tracking_uri(cfg.mlflow.tracking_uri)
        tracking.log_model(uri, logger.run_id, model, example, cfg.mlflow.registered_model_name)


def epoch_metrics(trainer: L.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if "/" in k and not k.endswith("_step")}


def write_outputs(cfg: DictConfig, result: TrainResult, logger: MLFlowLogger) -> None:
    """The train stage's DVC outputs: metrics JSON and the MLflow run evaluate logs into."""
    train_metrics = {k: round(v, 6) for k, v in result.metrics.items() if not k.startswith("test/")}
    atomic.write_json(resolve(cfg.paths.train_metrics), train_metrics)
    run_info = {"run_id": result.run_id, "experiment_id": logger.experiment_id}
    atomic.write_json(resolve(cfg.paths.run_info), run_info)
