"""The deployable model into the run (an MLflow pyfunc: serving/pyfunc_model.py) and the registry."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import digitpipe
from digitpipe.errors import DivergedError
from digitpipe.serving import model_code
from digitpipe.serving.images import png_bytes
from digitpipe.serving.network import PixelClassifier
from digitpipe.serving.pyfunc_model import IMAGE, NETWORK, SIGNATURE
from digitpipe.tracking.logger import store_failures
from digitpipe.tracking.registry import mark_candidate
from digitpipe.tracking.run import TrackedRun


def non_finite_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of floating-point tensors holding NaN or infinity."""
    return [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]


def export_network(model: PixelClassifier, example: np.ndarray, path: Path) -> None:
    """The network as a torch.export program with any batch size (loadable without this code)."""
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    program = torch.export.export(model.eval(), (torch.as_tensor(example),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))


def log_model(
    run: TrackedRun, model: PixelClassifier, example: np.ndarray, registered_name: str | None
) -> str:
    """Log the model into the run as "model" and register it if named. A model with non-finite
    weights is never logged."""
    import mlflow
    import mlflow.pyfunc
    import mlflow.pytorch
    import PIL

    if bad := non_finite_tensors(model.state_dict()):
        raise DivergedError(f"refusing to log a model with non-finite weights ({', '.join(bad[:3])})")
    mlflow.set_tracking_uri(run.store.uri)
    with tempfile.TemporaryDirectory() as tmp, store_failures(run.store.uri, "logging the model"):
        network = Path(tmp) / "network.pt2"
        export_network(model, example, network)
        mlflow.start_run(run_id=run.run_id)
        try:
            info = mlflow.pyfunc.log_model(
                name="model", python_model=model_code.__file__, artifacts={NETWORK: str(network)},
                code_paths=[str(Path(digitpipe.__file__).parent)], signature=SIGNATURE,
                input_example=pd.DataFrame({IMAGE: [png_bytes(example[0])]}),
                registered_model_name=registered_name or None,
                # pinned, not inferred: inferring imports the model in a subprocess, ~15 s per training
                pip_requirements=[*mlflow.pytorch.get_default_pip_requirements(),
                                  f"mlflow=={mlflow.__version__}", f"pillow=={PIL.__version__}"],
            )  # fmt: skip
        finally:
            mlflow.end_run(status="RUNNING")  # the fluent API would end it FINISHED: TrackedRun decides
        if registered_name:
            mark_candidate(run.store.client, registered_name, run.run_id)
    return info.model_uri
