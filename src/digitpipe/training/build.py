"""The objects a training is made of, from the config: model, data, callbacks, loggers, Trainer.

`settings` is what config.validate resolved (precision, train_step); the opt-in step machinery
(digitpipe.steps) is imported only when it asks for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from digitpipe.config.settings import Settings
from digitpipe.config.values import per_process_batch_size
from digitpipe.data.datamodule import DigitsDataModule
from digitpipe.data.source import dataset_source
from digitpipe.lightning_compat import StopOnSignal
from digitpipe.metric_names import VAL_ACC
from digitpipe.models.classifier import DigitClassifier
from digitpipe.tracking.callbacks import RunMetadata, SystemMetrics
from digitpipe.tracking.logger import RunLogger
from digitpipe.tracking.run import TrackedRun
from digitpipe.training.checkpoints import RunState, VerifiedCheckpointIO, checkpoint_callbacks
from digitpipe.training.guards import DivergenceGuard
from digitpipe.training.history import EpochHistoryLogger
from digitpipe.training.resume import identity
from digitpipe.training.run_dir import RunDir

MONITOR = VAL_ACC


def build_model(cfg: DictConfig, settings: Settings, world_size: int = 1) -> DigitClassifier:
    # factories (_partial_): the classifier passes the optimizer its parameters, the scheduler its optimizer
    scheduler = instantiate(cfg.scheduler, _partial_=True) if cfg.get("scheduler") else None
    # the linear scaling rule: N processes, N times the samples per step, N times the rate
    lr = cfg.optimizer.lr * world_size if cfg.distributed.scale_lr else cfg.optimizer.lr
    # a CUDA graph replays the update too: its optimizer keeps its step count on the GPU
    capturable = {"capturable": True} if settings.steps.cuda_graph else {}
    optimizer = instantiate(cfg.optimizer, _partial_=True, lr=lr, **capturable)
    arguments = dict(
        activation=cfg.model.activation, negative_slope=cfg.model.negative_slope,
        num_classes=cfg.data.num_classes, image_size=cfg.data.image_size, init=cfg.model.init,
        standardize=cfg.data.normalize, optimizer=optimizer,
        scheduler=scheduler,
    )  # fmt: skip
    if not settings.steps.manual:
        return DigitClassifier(**arguments)
    from digitpipe.steps.module import SteppedClassifier

    return SteppedClassifier(**arguments, graphed=settings.steps.cuda_graph)


def build_datamodule(cfg: DictConfig, settings: Settings, world_size: int = 1) -> DigitsDataModule:
    d = cfg.data
    batch_size = per_process_batch_size(d.batch_size, world_size, cfg.distributed.batch_scope)
    arguments = (dataset_source(cfg), batch_size, d.eval_batch_size, cfg.seed)
    if settings.steps.steps_per_batch == 1:
        return DigitsDataModule(*arguments)
    from digitpipe.steps.batches import GroupedDataModule

    return GroupedDataModule(*arguments, steps_per_batch=settings.steps.steps_per_batch)


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    return [instantiate(spec) for spec in (cfg.get("callbacks") or {}).values()]


def trainer_settings(cfg: DictConfig, settings: Settings) -> dict:
    """lightning.Trainer's keyword arguments: a strategy node instantiated, `auto` precision resolved."""
    return {**instantiate(cfg.trainer, _convert_="all"), "precision": settings.precision}


def make_trainer(cfg: DictConfig, settings: Settings, **kwargs) -> L.Trainer:
    """lightning.Trainer(**trainer_settings(...), **kwargs), without deterministic mode's NaN fill.

    Trainer(deterministic=True) calls torch.use_deterministic_algorithms(True), which also fills
    every new tensor with NaN (torch.utils.deterministic.fill_uninitialized_memory), a debugging aid
    that exposes reads of uninitialized memory. No op of this training reads any, so its results are
    bit-identical without the fill (tests/unit/test_trainer_layout.py), and the fill is work on every
    allocation. Both are process-wide; train() puts them back (environment.restored).
    """
    trainer = L.Trainer(**{**trainer_settings(cfg, settings), **kwargs})
    torch.utils.deterministic.fill_uninitialized_memory = False
    return trainer


def build_trainer(
    cfg: DictConfig, settings: Settings, run: TrackedRun | None, run_dir: RunDir, extra: Sequence = ()
) -> tuple[L.Trainer, ModelCheckpoint, EpochHistoryLogger]:
    """A Trainer writing into `run_dir`, its best-checkpoint callback and its epoch history; on DDP
    ranks other than 0, `run` is None and nothing is logged."""
    best, last = checkpoint_callbacks(run_dir, MONITOR)
    history = EpochHistoryLogger(run_dir.history)
    run_id = run.run_id if run else None
    callbacks = [best, last, RunState(run_id, identity(cfg), history), DivergenceGuard(), StopOnSignal()]
    loggers: list = [history]
    if run is not None:
        logged = run.logged_steps() if run.resumed else {}
        loggers.insert(0, RunLogger(run, run_dir.unsent, logged))  # first: trainer.logger
        callbacks.append(RunMetadata(run, cfg, settings.steps))
        if cfg.mlflow.system_metrics_interval_s:
            callbacks.append(SystemMetrics(cfg.mlflow.system_metrics_interval_s, run))
    trainer = make_trainer(
        cfg, settings, logger=loggers, callbacks=[*callbacks, *build_callbacks(cfg), *extra],
        plugins=[VerifiedCheckpointIO()], enable_model_summary=False,
    )  # fmt: skip
    return trainer, best, history
