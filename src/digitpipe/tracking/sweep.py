"""A Hydra callback that groups a `-m` sweep's runs under one MLflow parent run."""

from __future__ import annotations

import atexit
import os
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from digitpipe.environment import SWEEP_PARENT_RUN
from digitpipe.errors import exit_on_user_error
from digitpipe.tracking.metadata import run_tags
from digitpipe.tracking.run import TrackedRun, close_dead_runs
from digitpipe.tracking.store import open_store


class SweepParentRun(Callback):
    """FINISHED when every job succeeded, FAILED when one failed, KILLED when the sweep was stopped."""

    def __init__(self) -> None:
        self.run: TrackedRun | None = None
        self.failed: list[str] = []

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra callbacks run outside the task's one-line error handling
        store = exit_on_user_error(open_store)(config.mlflow)
        close_dead_runs(store.client)
        sweep = " ".join(config.hydra.overrides.task)
        self.run = TrackedRun.create(store, f"sweep: {sweep}"[:250], {**run_tags(), "sweep": sweep})
        os.environ[SWEEP_PARENT_RUN] = self.run.run_id
        atexit.register(self._stopped)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status == JobStatus.FAILED:
            self.failed.append(" ".join(config.hydra.overrides.task))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.run is None:
            return
        if self.failed:
            self.run.fail(f"jobs failed: {'; '.join(self.failed)}")
        else:
            self.run.finish()
        os.environ.pop(SWEEP_PARENT_RUN, None)

    def _stopped(self) -> None:
        if self.run is not None and not self.run.ended:
            self.run.kill("the sweep stopped before its last job")


def parent_tags() -> dict[str, str]:
    """The tag that makes a job's run a child of the sweep's parent run, inside a sweep."""
    parent = os.environ.get(SWEEP_PARENT_RUN)
    return {"mlflow.parentRunId": parent} if parent else {}
