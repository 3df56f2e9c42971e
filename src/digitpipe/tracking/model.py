"""The deployable model into the run (an MLflow pyfunc: serving/pyfunc_model.py) and the registry.

Logged through the run's client, as mlflow.pyfunc.log_model logs one, but without the fluent API's
process-wide tracking URI and active run: a LoggedModel of the run, its files, READY (or FAILED).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import digitpipe
from digitpipe.errors import DivergedError
from digitpipe.models.checkpoint import non_finite_tensors
from digitpipe.serving import model_code
from digitpipe.serving.images import png_bytes
from digitpipe.serving.network import PixelClassifier
from digitpipe.serving.pyfunc_model import IMAGE, NETWORK, SIGNATURE
from digitpipe.tracking.registry import mark_candidate, register_version
from digitpipe.tracking.run import TrackedRun
from digitpipe.tracking.store import store_failures

MODEL_NAME = "model"  # the run's model, as the UI and models:/ URIs name it


def export_network(model: PixelClassifier, example: np.ndarray, path: Path) -> None:
    """The network as a torch.export program with any batch size (loadable without this code)."""
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    program = torch.export.export(model.eval(), (torch.as_tensor(example),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))


def save_pyfunc(path: Path, network: Path, example: np.ndarray, mlflow_model) -> None:
    """The MLflow model's files: the exported network, this package as its code, the signature."""
    import mlflow
    import mlflow.pyfunc
    import mlflow.pytorch
    import PIL

    mlflow.pyfunc.save_model(
        str(path), python_model=model_code.__file__, artifacts={NETWORK: str(network)},
        code_paths=[str(Path(digitpipe.__file__).parent)], signature=SIGNATURE, mlflow_model=mlflow_model,
        input_example=pd.DataFrame({IMAGE: [png_bytes(example[0])]}),
        # pinned, not inferred: inferring imports the model in a subprocess, ~15 s per training
        pip_requirements=[*mlflow.pytorch.get_default_pip_requirements(),
                          f"mlflow=={mlflow.__version__}", f"pillow=={PIL.__version__}"],
    )  # fmt: skip
    for cache in path.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def log_model(
    run: TrackedRun, model: PixelClassifier, example: np.ndarray, registered_name: str | None
) -> str:
    """Log the model into the run and register it if named; return its models:/ URI. A model with
    non-finite weights is never logged."""
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    if bad := non_finite_tensors(model.state_dict()):
        raise DivergedError(f"refusing to log a model with non-finite weights ({', '.join(bad[:3])})")
    client = run.client
    with tempfile.TemporaryDirectory() as tmp, store_failures(run.store.uri, "logging the model"):
        export_network(model, example, Path(tmp) / "network.pt2")
        params = client.get_run(run.run_id).data.params  # a LoggedModel carries its run's params
        logged = client.create_logged_model(
            run.store.experiment_id, name=MODEL_NAME, source_run_id=run.run_id, params=params
        )
        try:
            client.log_outputs(run.run_id, [LoggedModelOutput(logged.model_id, step=0)])
            files = Path(tmp) / MODEL_NAME
            described = Model(artifact_path=logged.artifact_location, model_uuid=logged.model_id,
                              run_id=run.run_id, model_id=logged.model_id)  # fmt: skip
            save_pyfunc(files, Path(tmp) / "network.pt2", example, described)
            client.log_model_artifacts(logged.model_id, str(files))
        except BaseException:
            client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
            raise
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
        if registered_name:
            register_version(client, registered_name, logged, run.run_id)
            mark_candidate(client, registered_name, run.run_id)
    return f"models:/{logged.model_id}"
