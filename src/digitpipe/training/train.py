"""The train stage: config in; a trained model, its MLflow run and its metrics out.

build -> fit -> record. While it trains, a run's checkpoints and history live in
paths.checkpoints/<run id>/; only a training that finished replaces the stage's outputs (the model
directory, history, metrics and run id), as one set. An interrupted one can be resumed (`resume`).
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from functools import partial
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from digitpipe import interrupts
from digitpipe.config import validate
from digitpipe.diagnostics.callback import Diagnostics
from digitpipe.errors import RankFailed
from digitpipe.paths import resolve
from digitpipe.tracking.run import TrackedRun, recorded
from digitpipe.training.build import build_datamodule, build_model, build_trainer, step_plan
from digitpipe.training.checkpoints import RunDir
from digitpipe.training.distributed import prepare_launch, release_launch
from digitpipe.training.publish import check_writable
from digitpipe.training.rank_watch import RankWatch
from digitpipe.training.record import (
    FitResult,
    TrainResult,
    explained,
    fail_run,
    open_run,
    record,
    release,
)
from digitpipe.training.resume import PLAN_ENV, Plan, identity, plan_start
from digitpipe.training.step_plan import StepPlan

# Lightning's warning when an epoch has fewer loader batches than trainer.log_every_n_steps
GROUPED_BATCHES_WARNING = r"The number of training batches \(\d+\) is smaller than the logging interval"


def train(cfg: DictConfig) -> TrainResult:
    validate(cfg)
    steps = step_plan(cfg)  # its setting errors, too, come before any work
    with interrupts.handled():
        return _train(cfg, steps)


def _train(cfg: DictConfig, steps: StepPlan) -> TrainResult:
    owner = rank_zero_only.rank == 0  # decides new run or resume, owns the MLflow run and the outputs
    root = resolve(cfg.paths.checkpoints)
    if owner:
        paths = cfg.paths
        check_writable([root, resolve(paths.model_dir), *{resolve(p).parent for p in
                        (paths.history, paths.train_metrics, paths.run_info)}])  # fmt: skip
    plan = plan_start(cfg.resume, root, identity(cfg), is_launcher=owner)
    with contextlib.ExitStack() as held:
        if owner and plan.run_dir:  # claimed first: two trainings may pick the same interrupted run
            held.callback(release, plan.run_dir.claim())
        run = open_run(cfg, plan) if owner else None
        run_dir = plan.run_dir or RunDir(root / (run.run_id if run else "rank"))  # other ranks never write
        if owner and not plan.run_dir:
            held.callback(release, run_dir.claim())
        with explained(run, run_dir), recorded(run):
            fitted = fit(cfg, run, run_dir, plan, steps)
            if not owner:
                return TrainResult(None, str(fitted.best_checkpoint), fitted.metrics)
            return record(cfg, run, run_dir, fitted)


def fit(cfg: DictConfig, run: TrackedRun | None, run_dir: RunDir, plan: Plan, steps: StepPlan) -> FitResult:
    L.seed_everything(cfg.seed, workers=True)
    trainer, best, history = build_trainer(cfg, run, run_dir)
    model = build_model(cfg, trainer.world_size, steps)
    datamodule = build_datamodule(cfg, trainer.world_size, steps)
    if trainer.is_global_zero and not plan.run_dir:
        print(model.summary())
    launcher = prepare_launch()
    os.environ[PLAN_ENV] = str(plan.checkpoint or "")  # what the DDP ranks this process starts resume
    started = time.perf_counter()
    watch = RankWatch(trainer, partial(fail_run, run) if run else None)
    try:
        try:
            with warnings.catch_warnings():
                if steps.steps_per_batch > 1:  # Lightning counts loader batches; the losses are logged
                    warnings.filterwarnings("ignore", GROUPED_BATCHES_WARNING)  # by step (classifier.py)
                trainer.fit(model, datamodule=datamodule, ckpt_path=plan.checkpoint, weights_only=True)
        except Exception as err:  # under DDP: a collective fails when another rank has died
            if reason := watch.explain(err):
                raise RankFailed(reason) from err
            raise
        rows = [history.rows[e] for e in sorted(history.rows)]
        metrics = {k: v for k, v in (rows[-1] if rows else {}).items() if k != "epoch"}  # a resume's too
        metrics |= epoch_metrics(trainer)
        metrics |= {
            "best/val_acc": float(best.best_model_score),
            "fit_seconds": time.perf_counter() - started,
        }
        if cfg.test_after_fit:  # every rank tests its shard; torchmetrics reduce across ranks
            trainer.test(model, datamodule=datamodule, ckpt_path=best.best_model_path, weights_only=True)
            metrics |= epoch_metrics(trainer)
    finally:
        watch.stop()
    os.environ.pop(PLAN_ENV, None)
    release_launch(launcher)
    example = datamodule.splits["val"].images[:4].float().numpy()
    diagnostics = next((c.records for c in trainer.callbacks if isinstance(c, Diagnostics)), None)
    return FitResult(metrics, Path(best.best_model_path), rows, example, diagnostics)


def epoch_metrics(trainer: L.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if "/" in k and not k.endswith("_step")}
