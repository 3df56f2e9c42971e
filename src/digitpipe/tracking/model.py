"""The deployable model (an MLflow pyfunc: serving/pyfunc_model.py) into the run, then the registry,
by MLflow's fluent API: on the run's store for the call only, and into the run without making it
the active run (which would end FINISHED when left)."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import digitpipe
from digitpipe.environment import MLFLOW_TRACKING_URI
from digitpipe.errors import DivergedError
from digitpipe.models.checkpoint import non_finite_tensors
from digitpipe.serving import model_code
from digitpipe.serving.images import png_bytes
from digitpipe.serving.network import PixelClassifier
from digitpipe.serving.pyfunc_model import IMAGE, NETWORK, SIGNATURE
from digitpipe.tracking.registry import CANDIDATE, STATUS_TAG, run_version
from digitpipe.tracking.run import TrackedRun
from digitpipe.tracking.store import store_failures


@contextlib.contextmanager
def fluent(uri: str) -> Iterator[None]:
    """MLflow's fluent API on `uri` for a while, then the process as it was: the tracking URI and
    $MLFLOW_TRACKING_URI (set_tracking_uri sets both), and sys.path (log_model loads the model to
    check its input example, its code first on sys.path)."""
    import mlflow

    variable, path = os.environ.get(MLFLOW_TRACKING_URI), list(sys.path)
    before = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None if before == variable else before)  # None: unset, the variable too
        if variable is not None:
            os.environ[MLFLOW_TRACKING_URI] = variable
        sys.path[:] = path


def log_model(run: TrackedRun, model: PixelClassifier, example: np.ndarray) -> str:
    """The model logged into the run (its files, READY, or FAILED); returns its models:/ URI. A model
    with non-finite weights is never logged."""
    import mlflow.pyfunc
    import mlflow.pytorch
    import PIL
    from mlflow.entities import LoggedModelOutput

    if bad := non_finite_tensors(model.state_dict()):
        raise DivergedError(f"refusing to log a model with non-finite weights ({', '.join(bad[:3])})")
    uri, client = run.store.uri, run.client
    with tempfile.TemporaryDirectory() as tmp, store_failures(uri, "logging the model"), fluent(uri):
        network, batch = Path(tmp) / "network.pt2", torch.export.Dim("batch", min=1, max=1 << 20)
        program = torch.export.export(model.eval(), (torch.as_tensor(example),), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(network))  # any batch size, loadable without this code
        logged = mlflow.initialize_logged_model("model", source_run_id=run.run_id,
                                                params=client.get_run(run.run_id).data.params,
                                                experiment_id=run.store.experiment_id)  # fmt: skip
        info = mlflow.pyfunc.log_model(
            model_id=logged.model_id, python_model=model_code.__file__, artifacts={NETWORK: str(network)},
            code_paths=[str(Path(digitpipe.__file__).parent)], signature=SIGNATURE,
            input_example=pd.DataFrame({IMAGE: [png_bytes(example[0])]}),
            # pinned, not inferred: inferring imports the model in a subprocess, ~15 s per training
            pip_requirements=[*mlflow.pytorch.get_default_pip_requirements(),
                              f"mlflow=={mlflow.__version__}", f"pillow=={PIL.__version__}"],
        )  # fmt: skip
        client.log_outputs(run.run_id, [LoggedModelOutput(logged.model_id, step=0)])  # the run's model
    return info.model_uri


def register(run: TrackedRun, model_uri: str, name: str) -> None:
    """A version of `name` from the run's model, a candidate until evaluate decides; once per run
    (an attempt of this run that failed after registering has made it)."""
    import mlflow

    with store_failures(run.store.uri, "registering the model"), fluent(run.store.uri):
        if run_version(run.client, name, run.run_id) is None:
            mlflow.register_model(model_uri, name, tags={STATUS_TAG: CANDIDATE})
