"""The study's aggregate stage, the files part: the cells' files in; the table, the plot data and
the figures out (the parent MLflow run: parent.py)."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from digitpipe import atomic
from digitpipe.errors import DataError
from digitpipe.evaluation.plots import png_bytes
from digitpipe.metric_names import VAL_ACC
from digitpipe_study.cells import Cell, cells
from digitpipe_study.figures import (
    accuracy_figure,
    dead_units_figure,
    grad_norm_figure,
    mean_grad_norms,
    mean_per_epoch,
)
from digitpipe_study.table import COLUMNS, CellResult, Row, group, markdown_table

REPORTS = "reports"
TABLE_MD, TABLE_CSV, SUMMARY = "activation_study.md", "activation_study.csv", "summary.json"
# One number per arm/activation, the mean test accuracy: what `dvc metrics diff --targets` compares
TEST_ACC_JSON = "test_acc.json"


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def read_cell(study_dir: Path, study: Mapping[str, Any], cell: Cell) -> CellResult:
    directory = study_dir / cell.directory
    try:
        return CellResult(
            arm=cell.arm,
            activation=cell.activation,
            seed=cell.seed,
            lr=float(study["dying"]["lr"] if cell.arm == "dying" else study["lr"]),
            run_id=json.loads((directory / "mlflow_run.json").read_text())["run_id"],
            test=json.loads((directory / "metrics.json").read_text()),
            history=_read_csv(directory / "history.csv"),
            diagnostics=_read_csv(directory / "diagnostics.csv"),
        )
    except (OSError, ValueError, KeyError) as err:
        raise DataError(
            f"cell {cell.name} has no complete results in {directory} ({err}); run its stage "
            "(dvc repro in pipelines/activation_study)"
        ) from err


def plot_data(rows: list[Row], last_step: int) -> dict[str, str]:
    """CSVs for `dvc plots`: validation accuracy per epoch, conv1's early gradient norm per step."""
    accuracy: dict[int, dict[str, Any]] = {}
    for row in rows:
        for epoch, mean in zip(*mean_per_epoch(row, VAL_ACC), strict=True):
            accuracy.setdefault(epoch, {"epoch": epoch})[f"{row.arm}/{row.activation}"] = round(mean, 6)
    grad: dict[int, dict[str, Any]] = {}
    for row in rows:
        steps, norms = mean_grad_norms(row, "conv1", last_step)
        for step, norm in zip(steps, norms, strict=True):
            grad.setdefault(step, {"step": step})[f"{row.arm}/{row.activation}"] = f"{norm:.6g}"
    series = [f"{row.arm}/{row.activation}" for row in rows]
    return {
        "accuracy_per_epoch.csv": atomic.csv_text(
            [accuracy[e] for e in sorted(accuracy)], ["epoch", *series]
        ),
        "early_grad_norm_conv1.csv": atomic.csv_text([grad[s] for s in sorted(grad)], ["step", *series]),
    }


def build_reports(rows: list[Row], study: Mapping[str, Any], last_step: int) -> dict[str, bytes]:
    """Every file of the aggregate stage, by name (under reports/)."""
    summaries = [row.summary() for row in rows]
    table = markdown_table(summaries)
    text = (
        "# Activation study\n\n"
        f"Each row: the mean over seeds {list(study['seeds'])} of {study['epochs']} epoch(s) of "
        f"{study['optimizer']}, batch 64 (quick: {bool(study['quick'])}). Dead: the fraction of a layer's "
        "units never positive on the probe images after the last epoch; saturated: the fraction of "
        "sigmoid/tanh pre-activations with |z| > 5, mean of the layers; ms/step: median wall time of a "
        "training step.\n\n" + table
    )
    metrics = {
        f"{s['arm']}/{s['activation']}": {k: v for k, v in s.items() if k not in ("arm", "activation")}
        for s in summaries
    }
    files = {
        TABLE_MD: text.encode(),
        TABLE_CSV: atomic.csv_text(summaries, [*COLUMNS, "test_acc_std"]).encode(),
        SUMMARY: atomic.json_text(metrics).encode(),
        TEST_ACC_JSON: atomic.json_text(
            {name: {"test_acc": m["test_acc_mean"]} for name, m in metrics.items()}
        ).encode(),
        **{name: data.encode() for name, data in plot_data(rows, last_step).items()},
        "accuracy_per_epoch.png": png_bytes(accuracy_figure(rows)),
        "early_grad_norm.png": png_bytes(grad_norm_figure(rows, last_step)),
        "dead_units.png": png_bytes(dead_units_figure(rows)),
    }
    return files


def aggregate(
    study_dir: Path, study: Mapping[str, Any], detail_steps: int
) -> tuple[list[Row], dict[Path, bytes]]:
    """The rows and the report files (paths under study_dir/reports), from every cell's files."""
    results = [read_cell(study_dir, study, cell) for cell in cells(study)]
    rows = group(results)
    files = build_reports(rows, study, detail_steps)
    return rows, {study_dir / REPORTS / name: data for name, data in files.items()}
