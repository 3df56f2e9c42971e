"""Lightning's MLflow logger for a run this project opened: resumable, and loud when the store fails."""

from __future__ import annotations

import contextlib
import csv
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

from digitpipe.errors import TrackingError
from digitpipe.tracking.run import TrackedRun

UNSENT_COLUMNS = ("key", "value", "step", "timestamp")


@contextlib.contextmanager
def store_failures(uri: str, doing: str, note: str = "") -> Iterator[None]:
    """Turn a failing MLflow store (after MLflow's bounded retries) into one line saying what failed."""
    import requests
    from mlflow.exceptions import MlflowException

    try:
        yield
    except (MlflowException, requests.RequestException, OSError) as err:
        reason = " ".join(str(err).split())[:200]
        raise TrackingError(f"MLflow store {uri} failed while {doing} ({reason}){note}") from err


class RunLogger(MLFlowLogger):
    """Logs into an open TrackedRun, which owns the run's status (Lightning would mark it FINISHED at
    the end of fit, before the outputs exist). After a resume it skips the steps the run already has,
    so no epoch appears twice; metrics it cannot send go to `unsent` and the error says so."""

    def __init__(self, run: TrackedRun, unsent: Path, logged_steps: Mapping[str, int]) -> None:
        super().__init__(tracking_uri=run.store.uri, run_id=run.run_id)
        self.unsent, self.logged_steps = unsent, dict(logged_steps)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        step = step or 0
        fresh = {k: v for k, v in metrics.items() if step > self.logged_steps.get(k, -1)}
        if not fresh:
            return
        try:
            with store_failures(self._tracking_uri, "logging metrics"):
                super().log_metrics(fresh, step)
        except TrackingError as err:
            save_unsent(self.unsent, fresh, step)
            raise TrackingError(f"{err}; the metrics it did not take are saved in {self.unsent}") from err

    @rank_zero_only
    def log_series(self, points: Iterable[tuple[str, float, int]]) -> None:
        """Many (key, value, step) points in as few requests as MLflow allows (log_metrics sends
        one step per request); the steps the run already has are skipped, as in log_metrics."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        fresh = [Metric(k, float(v), now, s) for k, v, s in points if s > self.logged_steps.get(k, -1)]
        try:
            with store_failures(self._tracking_uri, "logging metrics"):
                for start in range(0, len(fresh), 1000):  # MLflow's log_batch limit
                    self.experiment.log_batch(self.run_id, metrics=fresh[start : start + 1000])
        except TrackingError as err:
            for point in fresh:
                save_unsent(self.unsent, {point.key: point.value}, point.step)
            raise TrackingError(f"{err}; the metrics it did not take are saved in {self.unsent}") from err

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        pass  # the run's status is TrackedRun's to set


def save_unsent(path: Path, metrics: Mapping[str, float], step: int) -> None:
    """Append metric points to a CSV (kept with the run's checkpoints; sent first when it resumes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(UNSENT_COLUMNS)
        now = int(time.time() * 1000)
        writer.writerows((key, float(value), step, now) for key, value in metrics.items())


def send_unsent(run: TrackedRun, path: Path) -> int:
    """Log the points a previous attempt could not send, then remove the file; return how many."""
    from mlflow.entities import Metric

    if not path.exists():
        return 0
    with path.open(newline="") as f:
        points = [
            Metric(r["key"], float(r["value"]), int(r["timestamp"]), int(r["step"]))
            for r in csv.DictReader(f)
        ]
    with store_failures(run.store.uri, f"sending the metrics saved in {path}"):
        for start in range(0, len(points), 1000):  # MLflow's log_batch limit
            run.store.client.log_batch(run.run_id, metrics=points[start : start + 1000])
    path.unlink()
    return len(points)
