"""The train stage: config in; a trained model, its MLflow run and its metrics out.

build -> fit -> record. While it trains, a run's checkpoints and history live in
paths.checkpoints/<run id>/; only a training that finished replaces the stage's outputs (the model
directory, history, metrics and run id), as one set. An interrupted one can be resumed (`resume`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import lightning as L
from filelock import FileLock
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from digitpipe import interrupts
from digitpipe import io as atomic
from digitpipe.config import validate
from digitpipe.data.datamodule import DigitsDataModule
from digitpipe.data.source import dataset_source
from digitpipe.errors import DivergedError, RankFailed, TrackingError
from digitpipe.models.classifier import DigitClassifier
from digitpipe.models.predictor import predictor_from_checkpoint
from digitpipe.paths import resolve
from digitpipe.tracking.callbacks import RunMetadata, SystemMetrics
from digitpipe.tracking.logger import RunLogger, send_unsent, store_failures
from digitpipe.tracking.metadata import run_name, run_tags
from digitpipe.tracking.model import log_model
from digitpipe.tracking.owner import close_dead_runs
from digitpipe.tracking.run import TrackedRun, recorded
from digitpipe.tracking.store import open_store
from digitpipe.tracking.sweep import parent_tags
from digitpipe.training.checkpoints import RunDir, RunState, checkpoint_callbacks
from digitpipe.training.distributed import (
    RankWatch,
    per_device_batch_size,
    prepare_launch,
    release_launch,
    scaled_lr,
)
from digitpipe.training.guards import DivergenceGuard, StopOnSignal
from digitpipe.training.history import EpochHistoryLogger
from digitpipe.training.publish import check_writable, publish
from digitpipe.training.resume import PLAN_ENV, Plan, announce, identity, plan_start

MONITOR = "val/acc"


@dataclass(frozen=True)
class TrainResult:
    run_id: str | None  # None on DDP ranks other than 0
    best_checkpoint: str
    metrics: dict[str, float]
    resumed: bool = False


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
    batch_size = per_device_batch_size(d.batch_size, world_size, cfg.distributed.batch_scope)
    return DigitsDataModule(dataset_source(cfg), batch_size, d.eval_batch_size)


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    return [instantiate(spec) for spec in (cfg.get("callbacks") or {}).values()]


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
    trainer_kwargs = instantiate(cfg.trainer, _convert_="all")  # a strategy node becomes an object
    trainer = L.Trainer(
        **trainer_kwargs,
        logger=loggers,
        callbacks=[*callbacks, *build_callbacks(cfg)],
        enable_model_summary=False,
    )
    return trainer, best, history


def fail_run(run: TrackedRun, reason: str) -> str:
    run.end("FAILED", reason)
    return f"{reason}; run {run.run_id} marked FAILED"


def train(cfg: DictConfig) -> TrainResult:
    validate(cfg)
    with interrupts.handled():
        return _train(cfg)


def _train(cfg: DictConfig) -> TrainResult:
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
            fitted = fit(cfg, run, run_dir, plan)
            if not owner:
                return TrainResult(None, str(fitted.best_checkpoint), fitted.metrics)
            return record(cfg, run, run_dir, fitted)


def release(lock: FileLock) -> None:
    lock.release()
    if not Path(lock.lock_file).with_suffix("").exists():  # the run finished: its directory is gone
        Path(lock.lock_file).unlink(missing_ok=True)


def open_run(cfg: DictConfig, plan: Plan) -> TrackedRun:
    """The store made ready, runs of dead processes closed, then this training's run, new or reopened."""
    announce(plan)
    store = open_store(cfg.mlflow)
    with store_failures(store.uri, "opening the run"):
        close_dead_runs(store.client)
        if plan.run_dir is None:
            return TrackedRun.create(store, run_name(cfg), {**run_tags(), **parent_tags()})
        run = TrackedRun.reopen(store, plan.run_dir.run_id)
    sent = send_unsent(run, plan.run_dir.unsent)
    print(
        f"resuming run {run.run_id} from {plan.checkpoint}"
        + (f" ({sent} unsent metrics sent)" if sent else "")
    )
    return run


@contextlib.contextmanager
def explained(run: TrackedRun | None, run_dir: RunDir) -> Iterator[None]:
    """Say, in the one line the CLI prints, what became of an interrupted or failed run."""
    kept = f"its checkpoints are kept in {run_dir.path}/ and the same command resumes it"
    try:
        yield
    except interrupts.Interrupted as stop:
        if run is not None:
            stop.detail = f"run {run.run_id} marked KILLED; {kept}"
        raise
    except TrackingError as err:
        raise TrackingError(f"{err}; {kept}") from err
    except DivergedError:
        if run is not None:
            shutil.rmtree(run_dir.path, ignore_errors=True)  # resuming it would only diverge again
        raise
    except RankFailed as err:
        raise RankFailed(f"{err}; run {run.run_id} marked FAILED; {kept}" if run else str(err)) from err


@dataclass(frozen=True)
class FitResult:
    metrics: dict[str, float]
    best_checkpoint: Path
    history_rows: list[dict[str, float]]
    example: object


def fit(cfg: DictConfig, run: TrackedRun | None, run_dir: RunDir, plan: Plan) -> FitResult:
    L.seed_everything(cfg.seed, workers=True)
    trainer, best, history = build_trainer(cfg, run, run_dir)
    model = build_model(cfg, trainer.world_size)
    datamodule = build_datamodule(cfg, trainer.world_size)
    if trainer.is_global_zero and not plan.run_dir:
        print(model.summary())
    launcher = prepare_launch()
    os.environ[PLAN_ENV] = str(plan.checkpoint or "")  # what the DDP ranks this process starts resume
    started = time.perf_counter()
    watch = RankWatch(trainer, partial(fail_run, run) if run else None)
    try:
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=plan.checkpoint, weights_only=True)
        except Exception as err:  # under DDP: a collective fails when another rank has died
            if reason := watch.failure(wait_s=2.0) or watch.lost_peer(err):
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
    return FitResult(metrics, Path(best.best_model_path), rows, example)


def epoch_metrics(trainer: L.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if "/" in k and not k.endswith("_step")}


def record(cfg: DictConfig, run: TrackedRun, run_dir: RunDir, result: FitResult) -> TrainResult:
    """Rank 0, after fit: checkpoints and the deployable model into the run, then the stage outputs
    replaced and the run marked FINISHED together."""
    uri = run.store.uri
    if cfg.mlflow.log_checkpoint:
        with store_failures(uri, "uploading the checkpoints"):
            for path in (run_dir.best, run_dir.last):
                run.store.client.log_artifact(run.run_id, str(path), "checkpoints")
    if cfg.mlflow.log_model:
        model = predictor_from_checkpoint(result.best_checkpoint)
        log_model(run, model, result.example, cfg.mlflow.registered_model_name)
    paths = cfg.paths
    model_dir = resolve(paths.model_dir)
    train_metrics = {k: round(v, 6) for k, v in result.metrics.items() if not k.startswith("test/")}
    outputs = {
        model_dir / "best.ckpt": run_dir.best.read_bytes(),
        model_dir / "last.ckpt": run_dir.last.read_bytes(),
        resolve(paths.history): run_dir.history.read_bytes(),
        resolve(paths.train_metrics): atomic.json_text(train_metrics).encode(),
        resolve(paths.run_info): atomic.json_text(
            {"run_id": run.run_id, "experiment_id": run.store.experiment_id}
        ).encode(),  # last: it names the run the others belong to
    }
    with store_failures(uri, "marking the run FINISHED"):
        publish(outputs, run_dir.path.parent / ".publish.lock", run.finish, retire=run_dir.path)
    return TrainResult(run.run_id, str(model_dir / "best.ckpt"), result.metrics, run.resumed)
