"""A training's MLflow run from start to end: opened (new or reopened), explained when it stops
early, and recorded when it finished: artifacts and model logged, outputs replaced, run FINISHED."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from omegaconf import DictConfig

from digitpipe import atomic, interrupts
from digitpipe.diagnostics.report import DIAGNOSTICS_CSV, DIAGNOSTICS_PNG, diagnostics_files
from digitpipe.errors import DivergedError, RankFailed, TrackingError
from digitpipe.metric_names import TEST, metric
from digitpipe.paths import resolve
from digitpipe.serving.network import pixel_classifier_from_checkpoint
from digitpipe.tracking.logger import send_unsent, store_failures
from digitpipe.tracking.metadata import run_name, run_tags
from digitpipe.tracking.model import log_model
from digitpipe.tracking.owner import close_dead_runs
from digitpipe.tracking.run import TrackedRun
from digitpipe.tracking.store import open_store
from digitpipe.tracking.sweep import parent_tags
from digitpipe.training.checkpoints import BEST, LAST, RunDir
from digitpipe.training.publish import publish
from digitpipe.training.resume import Plan, announce


@dataclass(frozen=True)
class TrainResult:
    run_id: str | None  # None on DDP ranks other than 0
    best_checkpoint: str
    metrics: dict[str, float]
    resumed: bool = False


@dataclass(frozen=True)
class FitResult:
    metrics: dict[str, float]
    best_checkpoint: Path
    history_rows: list[dict[str, float]]
    example: object
    diagnostics: list[dict] | None = None  # the Diagnostics callback's records (diagnostics=on)


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


def release(lock: FileLock) -> None:
    lock.release()
    if not Path(lock.lock_file).with_suffix("").exists():  # the run finished: its directory is gone
        Path(lock.lock_file).unlink(missing_ok=True)


def fail_run(run: TrackedRun, reason: str) -> str:
    run.end("FAILED", reason)
    return f"{reason}; run {run.run_id} marked FAILED"


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


def record(cfg: DictConfig, run: TrackedRun, run_dir: RunDir, result: FitResult) -> TrainResult:
    """Rank 0, after fit: checkpoints and the deployable model into the run, then the stage outputs
    replaced and the run marked FINISHED together."""
    uri = run.store.uri
    if cfg.mlflow.log_checkpoint:
        with store_failures(uri, "uploading the checkpoints"):
            for path in (run_dir.best, run_dir.last):
                run.store.client.log_artifact(run.run_id, str(path), "checkpoints")
    if cfg.mlflow.log_model:
        model = pixel_classifier_from_checkpoint(result.best_checkpoint)
        log_model(run, model, result.example, cfg.mlflow.registered_model_name)
    paths = cfg.paths
    diagnostics = diagnostics_files(result.diagnostics, run_name(cfg)) if result.diagnostics else {}
    if diagnostics:
        with store_failures(uri, "uploading the diagnostics"):
            for name, data in diagnostics.items():
                (run_dir.path / name).write_bytes(data)
                run.store.client.log_artifact(run.run_id, str(run_dir.path / name), "diagnostics")
    model_dir = resolve(paths.model_dir)
    train_metrics = {k: round(v, 6) for k, v in result.metrics.items() if not k.startswith(metric(TEST, ""))}
    outputs = {
        model_dir / BEST: run_dir.best.read_bytes(),
        model_dir / LAST: run_dir.last.read_bytes(),
        resolve(paths.history): run_dir.history.read_bytes(),
        resolve(paths.train_metrics): atomic.json_text(train_metrics).encode(),
        # diagnostics=off: an earlier run's diagnostics would describe another model, so they go
        resolve(paths.diagnostics): diagnostics.get(DIAGNOSTICS_CSV),
        resolve(paths.diagnostics_figure): diagnostics.get(DIAGNOSTICS_PNG),
        resolve(paths.run_info): atomic.json_text(
            {"run_id": run.run_id, "experiment_id": run.store.experiment_id}
        ).encode(),  # last: it names the run the others belong to
    }
    with store_failures(uri, "marking the run FINISHED"):
        publish(outputs, run_dir.path.parent / ".publish.lock", run.finish, retire=run_dir.path)
    return TrainResult(run.run_id, str(model_dir / BEST), result.metrics, run.resumed)
