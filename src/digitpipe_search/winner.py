"""The study's winner made a model: its trial's overrides trained again by the main pipeline's train
(this time logging and registering the model, under the study's run), then tested by its evaluate,
which records the test accuracy and moves @champion only if it beats the champion's.

A trial keeps no model (its files go when it ends), so the winner is trained again: the same config,
seed and number of torch threads (sums differ with the thread count), so on the same machine the
same val/acc as its trial to the last digit (tests/integration/test_search.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from digitpipe_search.trials import own_files


def make_winner(
    compose: Callable[[list[str]], DictConfig],
    best: dict[str, Any],
    study: str,
    winner_dir: Path,
    parent_run_id: str | None,
) -> dict[str, float]:
    """Train and evaluate the winner in this process, on its trial's number of threads; its val/acc
    and test metrics. Its files, name and parent are set on the composed config (no path or name
    travels in an override string, so any directory and study name work)."""
    import torch

    from digitpipe.evaluation.evaluate import run_evaluate
    from digitpipe.training.train import train

    cfg = compose([*best["overrides"], "resume=false", "test_after_fit=false"])  # the test set: evaluate's
    own_files(cfg, winner_dir)
    cfg.mlflow.run_name = f"winner of {study}: trial {best['trial']}"
    cfg.mlflow.tags = {**cfg.mlflow.tags, "search.study": study, "search.winner_of_trial": str(best["trial"])}
    cfg.mlflow.parent_run_id = parent_run_id
    threads = torch.get_num_threads()
    torch.set_num_threads(int(best.get("torch_threads") or threads))
    try:
        trained = train(cfg)
        evaluation = run_evaluate(cfg)
    finally:
        torch.set_num_threads(threads)
    return {
        "best/val_acc": float(trained.metrics["best/val_acc"]),
        **evaluation.scalars,
        "run_id": trained.run_id,
    }
