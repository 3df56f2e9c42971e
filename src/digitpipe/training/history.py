"""One row per epoch (train/val loss and accuracy, learning rate) as a CSV for `dvc plots`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from digitpipe import atomic
from digitpipe.metric_names import LR, TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_LOSS

HISTORY_COLUMNS = ("epoch", TRAIN_LOSS, TRAIN_ACC, VAL_LOSS, VAL_ACC, LR)
METRICS = HISTORY_COLUMNS[1:]
DIAGNOSTICS = "diag/"  # epoch-level diagnostics (diagnostics=on) follow, as columns of their own


def is_history_metric(key: str) -> bool:
    return key in METRICS or key.startswith(DIAGNOSTICS)


def epoch_row(epoch: int, metrics: Mapping[str, Any]) -> dict[str, float]:
    """The history columns found in `metrics`, for epoch `epoch` (counted from 1)."""
    return {"epoch": epoch} | {k: round(float(v), 6) for k, v in metrics.items() if is_history_metric(k)}


def history_columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The fixed columns, then the diagnostics the rows hold, sorted."""
    extra = sorted({key for row in rows for key in row if key.startswith(DIAGNOSTICS)})
    return [*HISTORY_COLUMNS, *extra]


class EpochHistoryLogger(Logger):
    """A logger that keeps one row per epoch and rewrites the CSV after each update.

    A logger, not a callback: loggers get the epoch metrics after every hook has logged them.
    A resumed training starts from the rows its checkpoint holds (`restore`), so no epoch repeats.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.rows: dict[int, dict[str, float]] = {}

    @property
    def name(self) -> str:
        return "history"

    @property
    def version(self) -> str:
        return "0"

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if "epoch" not in metrics or not any(is_history_metric(k) for k in metrics):
            return
        epoch = int(metrics["epoch"]) + 1
        self.rows[epoch] = self.rows.get(epoch, {}) | epoch_row(epoch, metrics)
        self._write()

    def last(self) -> dict[str, float]:
        """The last epoch's row, without its epoch number ({} before the first epoch ends)."""
        return {k: v for k, v in self.rows[max(self.rows)].items() if k != "epoch"} if self.rows else {}

    @rank_zero_only
    def restore(self, rows: Iterable[Mapping[str, float]]) -> None:
        self.rows = {int(row["epoch"]): dict(row) for row in rows}
        self._write()

    def _write(self) -> None:
        rows = [self.rows[epoch] for epoch in sorted(self.rows)]
        atomic.write_text(self.path, atomic.csv_text(rows, history_columns(rows)))
