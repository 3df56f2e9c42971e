"""A Hydra callback that groups a `-m` sweep's runs under one MLflow parent run."""

from __future__ import annotations

import os
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from digitpipe import tracking

PARENT_ENV = "DIGITPIPE_MLFLOW_PARENT_RUN_ID"  # read by the jobs, inherited by their DDP ranks


class SweepParentRun(Callback):
    def __init__(self) -> None:
        self.client, self.run_id = None, None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mlflow.tracking import MlflowClient

        uri = tracking.tracking_uri(config.mlflow.tracking_uri)
        tracking.check_reachable(uri)
        self.client = MlflowClient(uri)
        name = config.mlflow.experiment_name
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = (
            experiment.experiment_id
            if experiment
            else self.client.create_experiment(name, tracking.artifact_location(uri))
        )
        sweep = " ".join(config.hydra.overrides.task)
        run = self.client.create_run(
            experiment_id, run_name=f"sweep: {sweep}"[:250], tags={**tracking.run_tags(), "sweep": sweep}
        )
        self.run_id = os.environ[PARENT_ENV] = run.info.run_id

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.run_id:
            self.client.set_terminated(self.run_id)
            os.environ.pop(PARENT_ENV, None)


def parent_tags() -> dict[str, str]:
    """The tag that makes a job's run a child of the sweep's parent run, inside a sweep."""
    parent = os.environ.get(PARENT_ENV)
    return {"mlflow.parentRunId": parent} if parent else {}
