"""Metric points the store did not take, kept beside a run's checkpoints and sent when it resumes."""

from __future__ import annotations

import csv
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

COLUMNS = ("key", "value", "step", "timestamp")
LOG_BATCH_LIMIT = 1000  # MLflow's, per log_batch request


def save_unsent(path: Path, metrics: Mapping[str, float], step: int) -> None:
    """Append metric points to the CSV at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(COLUMNS)
        now = int(time.time() * 1000)
        writer.writerows((key, float(value), step, now) for key, value in metrics.items())


def send_unsent(client: MlflowClient, run_id: str, path: Path) -> int:
    """Log the points saved at `path` into the run, then remove the file; return how many."""
    from mlflow.entities import Metric

    if not path.exists():
        return 0
    with path.open(newline="") as f:
        points = [
            Metric(r["key"], float(r["value"]), int(r["timestamp"]), int(r["step"]))
            for r in csv.DictReader(f)
        ]
    for start in range(0, len(points), LOG_BATCH_LIMIT):
        client.log_batch(run_id, metrics=points[start : start + LOG_BATCH_LIMIT])
    path.unlink()
    return len(points)
