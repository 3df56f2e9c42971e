"""A study cell: one training (an arm, an activation, a seed) through the real train and evaluate
CLIs, with diagnostics on, into the cell's own directory and a child run of the study."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ARMS = ("base", "dying")  # the seed's gentle rate; a rate high enough for ReLU units to die
EXPERIMENT = "activation-study"
CELLS_DIR = "cells"

# what a cell leaves in cells/<name>/, as paths.* settings of the train and evaluate stages
CELL_PATHS = {
    "model_dir": "models",
    "run_info": "mlflow_run.json",
    "train_metrics": "train_metrics.json",
    "history": "history.csv",
    "diagnostics": "diagnostics.csv",
    "diagnostics_figure": "diagnostics.png",
    "metrics": "metrics.json",
    "per_class": "evaluation/per_class.csv",
    "predictions": "evaluation/predictions.csv",
    "confusion_png": "evaluation/confusion_matrix.png",
}


@dataclass(frozen=True)
class Cell:
    arm: str
    activation: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.arm}-{self.activation}-s{self.seed}"

    @property
    def directory(self) -> Path:
        return Path(CELLS_DIR) / self.name


def cells(study: Mapping[str, Any]) -> list[Cell]:
    """Every cell of the study, in the order of its dvc.yaml: the base arm, then the dying arm."""
    arms = {"base": study["activations"], "dying": study["dying"]["activations"]}
    return [Cell(arm, a, int(s)) for arm in ARMS for a in arms[arm] for s in study["seeds"]]


def cell_overrides(study: Mapping[str, Any], cell: Cell, main: Mapping[str, Any], project: Path) -> list[str]:
    """The Hydra overrides of src/train.py and src/evaluate.py for `cell`, run from the study's
    directory. `main` is the config the main pipeline's stages run: the cell reads its processed data
    (the same split: data.split_seed), never a copy. quick: a few steps per cell, for CI or a first look."""
    lr = study["dying"]["lr"] if cell.arm == "dying" else study["lr"]
    quick = bool(study["quick"])
    main_paths = main["paths"]
    overrides = [
        "diagnostics=on",
        f"model.activation={cell.activation}",
        f"optimizer={study['optimizer']}",
        f"optimizer.lr={lr}",
        f"seed={cell.seed}",
        f"data.split_seed={main['data']['split_seed']}",
        f"data.val_size={main['data']['val_size']}",
        f"trainer.max_epochs={1 if quick else study['epochs']}",
        f"trainer.precision={study['precision']}",
        f"callbacks.diagnostics.probe_size={study['probe_size']}",
        # the main pipeline's data, where it is (relative to this directory: ../../data/...)
        *(f"paths.{key}={project / main_paths[key]}" for key in ("dataset", "stats", "raw_dir")),
        *(f"paths.{key}={cell.directory / path}" for key, path in CELL_PATHS.items()),
        f"mlflow.experiment_name={EXPERIMENT}",
        f"mlflow.run_name={cell.name}",
        "mlflow.log_model=false",  # the cell's model is a DVC output; the registry is the main pipeline's
        "mlflow.registered_model_name=null",
        f"hydra.run.dir=outputs/{cell.name}",
    ]
    if quick:
        overrides += [f"+trainer.limit_train_batches={study['quick_steps']}", "+trainer.limit_val_batches=5"]
    return overrides
