"""The deployable model into the run (mlflow.pytorch, torch.export format) and the registry."""

from __future__ import annotations

from typing import Any

import torch

from digitpipe.errors import DivergedError
from digitpipe.tracking.logger import store_failures
from digitpipe.tracking.registry import mark_candidate
from digitpipe.tracking.run import TrackedRun


def non_finite_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of floating-point tensors holding NaN or infinity."""
    return [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]


def log_model(run: TrackedRun, model: torch.nn.Module, example: Any, registered_name: str | None) -> str:
    """Log `model` into the run with a signature from `example` (loadable without this project's
    code), and register it if named. A model with non-finite weights is never logged."""
    import mlflow
    import mlflow.pytorch

    if bad := non_finite_tensors(model.state_dict()):
        raise DivergedError(f"refusing to log a model with non-finite weights ({', '.join(bad[:3])})")
    mlflow.set_tracking_uri(run.store.uri)
    with store_failures(run.store.uri, "logging the model"):
        mlflow.start_run(run_id=run.run_id)
        try:
            info = mlflow.pytorch.log_model(
                model, name="model", serialization_format="pt2", input_example=example,
                registered_model_name=registered_name or None,
                # the flavor's own pins (torch, cloudpickle): inferring them imports the model in a
                # subprocess, ~15 s per training on two cores
                pip_requirements=mlflow.pytorch.get_default_pip_requirements(),
            )  # fmt: skip
        finally:
            mlflow.end_run(status="RUNNING")  # the fluent API would end it FINISHED: TrackedRun decides
        if registered_name:
            mark_candidate(run.store.client, registered_name, run.run_id)
    return info.model_uri
