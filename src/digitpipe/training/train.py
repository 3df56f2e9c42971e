"""The train stage: train(cfg) -> TrainResult. Check, build, fit, (test), record, return.

While it trains, a run's checkpoints and history live in paths.checkpoints/<run id>/; only a
training that finished replaces the stage's outputs, as one set (record.py). An interrupted one is
continued by the same command, in the same MLflow run (attempt.py, resume.py).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from omegaconf import DictConfig

from digitpipe import environment, interrupts
from digitpipe.cli import log_lightning_once
from digitpipe.config.settings import Settings, validate

# Lightning's warning when an epoch has fewer of its batches than trainer.log_every_n_steps: false
# with several steps per batch, whose losses are logged per step (steps/module.py)
GROUPED_BATCHES_WARNING = r"The number of training batches \(\d+\) is smaller than the logging interval"


def train(cfg: DictConfig, callbacks: Sequence = ()):  # -> training.record.TrainResult
    """Train the convnet `cfg` describes, in an MLflow run of its own (or an interrupted one's);
    `callbacks`: Lightning callbacks made in code for this one training (a search trial's pruning)."""
    settings = validate(cfg)  # first: Lightning, imported below, takes seconds to import
    import lightning as L

    log_lightning_once()

    from digitpipe.training.attempt import attempt
    from digitpipe.training.build import build_datamodule, build_model, build_trainer
    from digitpipe.training.record import FitResult, TrainResult, record

    with environment.restored(), interrupts.handled(), attempt(cfg) as this:  # SIGINT/SIGTERM: raised
        L.seed_everything(cfg.seed, workers=True)
        trainer, best, history = build_trainer(cfg, settings, this.run, this.run_dir, callbacks)
        model = build_model(cfg, settings, trainer.world_size)
        datamodule = build_datamodule(cfg, settings, trainer.world_size)
        if trainer.is_global_zero and this.is_new:
            print(model.summary())
        started = time.perf_counter()
        with launched(trainer, this), quiet_if_grouped(settings):
            trainer.fit(model, datamodule=datamodule, ckpt_path=this.checkpoint, weights_only=True)
            seconds = time.perf_counter() - started
            metrics = {**history.last(), **epoch_metrics(trainer)}  # the history: a resume's epochs too
            metrics |= {"best/val_acc": float(best.best_model_score), "fit_seconds": seconds}
            if cfg.test_after_fit:  # every rank tests its shard; torchmetrics reduce across ranks
                trainer.test(model, datamodule=datamodule, ckpt_path=best.best_model_path, weights_only=True)
                metrics |= epoch_metrics(trainer)
        if this.run is None:  # a DDP rank other than 0: rank 0 records
            return TrainResult(None, best.best_model_path, metrics)
        example = datamodule.splits["val"].images[:4].float().numpy()
        fitted = FitResult(metrics, Path(best.best_model_path), example, diagnostics_records(trainer))
        return record(cfg, this.run, this.run_dir, fitted)


def launched(trainer, this) -> contextlib.AbstractContextManager:
    """Under DDP, the launch narrowed to this job and undone afterwards (digitpipe.distributed)."""
    if trainer.world_size == 1:
        return contextlib.nullcontext()
    from digitpipe.distributed.launch import launched

    return launched(trainer.global_rank, this.checkpoint)


@contextlib.contextmanager
def quiet_if_grouped(settings: Settings) -> Iterator[None]:
    with warnings.catch_warnings():
        if settings.steps.steps_per_batch > 1:
            warnings.filterwarnings("ignore", GROUPED_BATCHES_WARNING)
        yield


def epoch_metrics(trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if "/" in k and not k.endswith("_step")}


def diagnostics_records(trainer) -> list[dict] | None:
    """The Diagnostics callback's measurements, where diagnostics=on added it."""
    from digitpipe.diagnostics.callback import Diagnostics

    return next((c.records for c in trainer.callbacks if isinstance(c, Diagnostics)), None)
