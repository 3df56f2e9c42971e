"""The objects a training is made of, from the config: model, data, callbacks, loggers, Trainer."""

from __future__ import annotations

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from digitpipe.data.datamodule import DigitsDataModule
from digitpipe.data.source import dataset_source
from digitpipe.metric_names import VAL_ACC
from digitpipe.models.classifier import DigitClassifier
from digitpipe.tracking.callbacks import RunMetadata, SystemMetrics
from digitpipe.tracking.logger import RunLogger
from digitpipe.tracking.run import TrackedRun
from digitpipe.training.checkpoints import RunDir, RunState, checkpoint_callbacks
from digitpipe.training.distributed import per_device_batch_size, scaled_lr
from digitpipe.training.guards import DivergenceGuard, StopOnSignal
from digitpipe.training.history import EpochHistoryLogger
from digitpipe.training.precision import resolve_precision
from digitpipe.training.resume import identity
from digitpipe.training.step_plan import StepPlan, plan_steps

MONITOR = VAL_ACC


def step_plan(cfg: DictConfig) -> StepPlan:
    """How this training's optimizer steps run (`train_step`): eagerly or as a CUDA graph, and how
    many per Lightning batch."""
    return plan_steps(cfg, trainer_settings(cfg))


def build_model(cfg: DictConfig, world_size: int = 1, plan: StepPlan | None = None) -> DigitClassifier:
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    lr = scaled_lr(cfg.optimizer.lr, world_size, cfg.distributed.scale_lr)
    plan = plan or step_plan(cfg)
    # a CUDA graph replays the update too: its optimizer keeps its step count on the GPU
    capturable = {"capturable": True} if plan.cuda_graph else {}
    return DigitClassifier(
        activation=cfg.model.activation,
        negative_slope=cfg.model.negative_slope,
        num_classes=cfg.data.num_classes,
        image_size=cfg.data.image_size,
        init=cfg.model.init,
        standardize=cfg.data.normalize,
        optimizer=instantiate(cfg.optimizer, lr=lr, **capturable),
        scheduler=scheduler,
        step_plan=plan,
    )


def build_datamodule(cfg: DictConfig, world_size: int = 1, plan: StepPlan | None = None) -> DigitsDataModule:
    d = cfg.data
    batch_size = per_device_batch_size(d.batch_size, world_size, cfg.distributed.batch_scope)
    steps = (plan or step_plan(cfg)).steps_per_batch
    return DigitsDataModule(dataset_source(cfg), batch_size, d.eval_batch_size, cfg.seed, steps)


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    return [instantiate(spec) for spec in (cfg.get("callbacks") or {}).values()]


def trainer_settings(cfg: DictConfig) -> dict:
    """lightning.Trainer's keyword arguments: a strategy node instantiated, `auto` precision resolved."""
    settings = instantiate(cfg.trainer, _convert_="all")
    settings["precision"] = resolve_precision(settings["precision"], settings["accelerator"])
    return settings


def make_trainer(cfg: DictConfig, **kwargs) -> L.Trainer:
    """lightning.Trainer(**trainer_settings(cfg), **kwargs), without deterministic mode's NaN fill.

    Trainer(deterministic=True) calls torch.use_deterministic_algorithms(True), which also fills
    every new tensor with NaN (torch.utils.deterministic.fill_uninitialized_memory), a debugging aid
    that exposes reads of uninitialized memory. No op of this training reads any, so its results are
    bit-identical without the fill (tests/unit/test_trainer_layout.py); torch.profiler puts the fill
    at ~2% of a CPU step, below the noise of wall-clock timings on the development machine.
    """
    trainer = L.Trainer(**{**trainer_settings(cfg), **kwargs})
    torch.utils.deterministic.fill_uninitialized_memory = False
    return trainer


def build_trainer(
    cfg: DictConfig, run: TrackedRun | None, run_dir: RunDir
) -> tuple[L.Trainer, ModelCheckpoint, EpochHistoryLogger]:
    """A Trainer writing into `run_dir`; on DDP ranks other than 0, `run` is None and nothing is logged."""
    best, last = checkpoint_callbacks(run_dir, MONITOR)
    history = EpochHistoryLogger(run_dir.history)
    run_id = run.run_id if run else None
    callbacks = [best, last, RunState(run_id, identity(cfg), history), DivergenceGuard(), StopOnSignal()]
    loggers: list = [history]
    if run is not None:
        logged = run.logged_steps() if run.resumed else {}
        loggers.insert(0, RunLogger(run, run_dir.unsent, logged))  # first: trainer.logger
        callbacks.append(RunMetadata(run, cfg))
        if cfg.mlflow.system_metrics_interval_s:
            callbacks.append(SystemMetrics(cfg.mlflow.system_metrics_interval_s, run))
    trainer = make_trainer(
        cfg,
        logger=loggers,
        callbacks=[*callbacks, *build_callbacks(cfg)],
        enable_model_summary=False,
    )
    return trainer, best, history
