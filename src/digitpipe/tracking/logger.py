"""A Lightning logger into a run this project opened: resumable, and loud when the store fails.

Lightning's MLFlowLogger would create or end the run itself (it marks it FINISHED at the end of
fit, before the outputs exist) and sets MLflow's process-wide tracking URI; this one only logs,
through the run's own client, and TrackedRun owns the run's status.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from digitpipe.errors import TrackingError
from digitpipe.tracking.run import TrackedRun
from digitpipe.tracking.store import store_failures
from digitpipe.tracking.unsent import LOG_BATCH_LIMIT, save_unsent

PARAMS_PER_BATCH, PARAM_LENGTH = 100, 250  # what Lightning's MLFlowLogger sends, so runs compare


class RunLogger(Logger):
    """Logs params and metrics into `run`. After a resume it skips the steps the run already has
    (`logged_steps`), so no epoch appears twice; metrics it cannot send go to `unsent` and the error
    says so."""

    def __init__(self, run: TrackedRun, unsent: Path, logged_steps: Mapping[str, int]) -> None:
        super().__init__()
        self.run, self.unsent, self.logged_steps = run, unsent, dict(logged_steps)

    @property
    def name(self) -> str:
        return "mlflow"

    @property
    def version(self) -> str:
        return self.run.run_id

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any], *args: Any, **kwargs: Any) -> None:
        from mlflow.entities import Param

        listed = [Param(key, str(value)[:PARAM_LENGTH]) for key, value in params.items()]
        with store_failures(self.run.store.uri, "logging the run's params"):
            for start in range(0, len(listed), PARAMS_PER_BATCH):
                self.run.client.log_batch(self.run.run_id, params=listed[start : start + PARAMS_PER_BATCH])

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        step = step or 0
        self.log_series((key, value, step) for key, value in metrics.items())

    @rank_zero_only
    def log_series(self, points: Iterable[tuple[str, float, int]]) -> None:
        """Many (key, value, step) points in as few requests as MLflow allows; the steps the run
        already has are skipped."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        fresh = [Metric(k, float(v), now, s) for k, v, s in points if s > self.logged_steps.get(k, -1)]
        try:
            with store_failures(self.run.store.uri, "logging metrics"):
                for start in range(0, len(fresh), LOG_BATCH_LIMIT):
                    self.run.client.log_batch(self.run.run_id, metrics=fresh[start : start + LOG_BATCH_LIMIT])
        except TrackingError as err:
            for point in fresh:
                save_unsent(self.unsent, {point.key: point.value}, point.step)
            raise TrackingError(f"{err}; the metrics it did not take are saved in {self.unsent}") from err
