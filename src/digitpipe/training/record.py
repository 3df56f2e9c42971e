"""A finished fit recorded: its checkpoints, model and diagnostics into the run, then the train
stage's outputs replaced, the model registered and the run marked FINISHED, together."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from digitpipe import atomic
from digitpipe.diagnostics.report import DIAGNOSTICS_CSV, DIAGNOSTICS_PNG, diagnostics_files
from digitpipe.metric_names import TRAIN_REPORT
from digitpipe.paths import resolve
from digitpipe.serving.network import pixel_classifier_from_checkpoint
from digitpipe.tracking.metadata import run_name
from digitpipe.tracking.model import log_model, register
from digitpipe.tracking.run import TrackedRun
from digitpipe.tracking.store import store_failures
from digitpipe.train_outputs import BEST, LAST, run_record
from digitpipe.training.publish import publish
from digitpipe.training.run_dir import RunDir


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
    example: object  # a few input images, the logged model's example
    diagnostics: list[dict] | None = None  # the Diagnostics callback's records (diagnostics=on)


def record(cfg: DictConfig, run: TrackedRun, run_dir: RunDir, result: FitResult) -> TrainResult:
    """Rank 0, after fit: what the run holds besides metrics, then the outputs and FINISHED."""
    uri, client = run.store.uri, run.client
    if cfg.mlflow.log_checkpoint:
        with store_failures(uri, "uploading the checkpoints"):
            for path in (run_dir.best, run_dir.last):
                client.log_artifact(run.run_id, str(path), "checkpoints")
    model_uri = None
    if cfg.mlflow.log_model:
        model_uri = log_model(run, pixel_classifier_from_checkpoint(result.best_checkpoint), result.example)
    diagnostics = diagnostics_files(result.diagnostics, run_name(cfg)) if result.diagnostics else {}
    if diagnostics:
        with store_failures(uri, "uploading the diagnostics"):
            for name, data in diagnostics.items():
                (run_dir.path / name).write_bytes(data)
                client.log_artifact(run.run_id, str(run_dir.path / name), "diagnostics")
    paths, model_dir, best = cfg.paths, resolve(cfg.paths.model_dir), run_dir.best.read_bytes()
    train_metrics = {k: round(result.metrics[k], 6) for k in TRAIN_REPORT}
    outputs = {
        model_dir / BEST: best,
        model_dir / LAST: run_dir.last.read_bytes(),
        resolve(paths.history): run_dir.history.read_bytes(),
        resolve(paths.train_metrics): atomic.json_text(train_metrics).encode(),
        # diagnostics=off: an earlier run's diagnostics would describe another model, so they go
        resolve(paths.diagnostics): diagnostics.get(DIAGNOSTICS_CSV),
        resolve(paths.diagnostics_figure): diagnostics.get(DIAGNOSTICS_PNG),
        # last: it names the run the others belong to
        resolve(paths.run_info): run_record(run.run_id, run.store.experiment_id, best).encode(),
    }

    def finish() -> None:  # registered only with its outputs staged, and just before FINISHED
        if model_uri and cfg.mlflow.registered_model_name:
            register(run, model_uri, cfg.mlflow.registered_model_name)
        run.finish()

    with store_failures(uri, "marking the run FINISHED"):
        publish(outputs, run_dir.path.parent / ".publish.lock", finish, retire=run_dir.path)
    return TrainResult(run.run_id, str(model_dir / BEST), result.metrics, run.resumed)
