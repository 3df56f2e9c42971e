"""The study's winner made a model: its trial's overrides trained again by the main pipeline's train
(this time logging and registering the model, under the study's run), then tested by its evaluate,
which records the test accuracy and moves @champion only if it beats the champion's.

A trial keeps no model (its files go when it ends), so the winner is trained again: the same config
and seed, so on the same machine the same val/acc as its trial (tests/integration/test_search.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

WINNER_FILES = {  # paths.<key>: the winner's train and evaluate outputs, in <work_dir>/<study>/winner/
    "model_dir": "models",
    "checkpoints": "checkpoints",
    "run_info": "mlflow_run.json",
    "train_metrics": "train_metrics.json",
    "history": "history.csv",
    "metrics": "metrics.json",
    "per_class": "per_class.csv",
    "predictions": "predictions.csv",
    "confusion_png": "confusion_matrix.png",
    "diagnostics": "diagnostics.csv",
    "diagnostics_figure": "diagnostics.png",
}


def winner_overrides(
    best: dict[str, Any], study: str, winner_dir: Path, parent_run_id: str | None
) -> list[str]:
    """The overrides `python src/train.py` and `python src/evaluate.py` take to make the winner."""
    extra = [f"paths.{key}={winner_dir / name}" for key, name in WINNER_FILES.items()]
    extra += [
        f"mlflow.run_name='winner of {study}: trial {best['trial']}'",
        f"++mlflow.tags={{search.study:{study},search.winner_of_trial:{best['trial']}}}",
        "resume=false",
        "test_after_fit=false",  # the test set is evaluate's, once, for the winner only
    ]
    if parent_run_id:
        extra.append(f"mlflow.parent_run_id={parent_run_id}")
    return [*best["overrides"], *extra]


def make_winner(compose, overrides: list[str]) -> dict[str, float]:
    """Train and evaluate the winner in this process; its val/acc and test metrics."""
    from digitpipe.evaluation.evaluate import run_evaluate
    from digitpipe.training.train import train

    cfg = compose(overrides)
    trained = train(cfg)
    evaluation = run_evaluate(cfg)
    return {
        "best/val_acc": float(trained.metrics["best/val_acc"]),
        **evaluation.scalars,
        "run_id": trained.run_id,
    }
