"""A real `mlflow server` and `mlflow models serve` on 127.0.0.1: remote logging, read-back, serving."""

from __future__ import annotations

import base64
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from digitpipe.serving.images import png_bytes
from digitpipe.tracking.registry import promote_if_better

from ..conftest import copy_project, free_port, run_cli, write_mirror
from .servers import start, stop

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    mlflow = str(Path(sys.executable).parent / "mlflow")
    command = [mlflow, "server", "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
               "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    process = start(command, f"{url}/health", cwd=root)
    yield url
    stop(process)


@pytest.fixture(scope="module")
def remote_run(server, tmp_path_factory, tiny):
    base = tmp_path_factory.mktemp("remote")
    project = copy_project(base / "project")
    mirror = write_mirror(base / "mirror", tiny.raw)
    args = [
        "python",
        "src/train.py",
        *tiny.overrides(),
        "callbacks.progress_bar.refresh_rate=0",
    ]
    result = run_cli(args, cwd=project, env={"MNIST_MIRROR": str(mirror), "MLFLOW_TRACKING_URI": server})
    assert result.returncode == 0, result.stderr[-3000:]
    run_id = json.loads((project / "reports" / "mlflow_run.json").read_text())["run_id"]
    return project, run_id


def test_a_run_logged_over_http_reads_back_through_the_client(server, remote_run):
    project, run_id = remote_run
    client = MlflowClient(server)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.activation"] == "relu"
    assert {"train/loss", "val/acc"} <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "model_summary.txt", "checkpoints"} <= artifacts
    assert (
        not (project / "mlflow.db").exists() and not (project / "mlruns").exists()
    )  # all went to the server
    version = client.get_model_version("mnist-convnet", "1")
    assert version.run_id == run_id


def invoke(port: int, body: dict) -> tuple[int, Any]:
    """POST `body` to the served model: the status and the JSON answer (predictions, or the error)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())["predictions"]
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def mlflow_pyfunc_answers(tracking_uri: str, pngs: list[bytes]) -> list[tuple[int, float]]:
    import mlflow.pyfunc
    import pandas as pd

    mlflow.set_tracking_uri(tracking_uri)
    answers = mlflow.pyfunc.load_model("models:/mnist-convnet@champion").predict(
        pd.DataFrame({"image": pngs})
    )
    return [
        (int(d), round(float(p), 5)) for d, p in zip(answers["digit"], answers["probability"], strict=True)
    ]


def test_the_registered_model_is_served_by_mlflow_models_serve(server, remote_run):
    project, run_id = remote_run
    # README serves the champion: promoted here as the evaluate stage would, over HTTP
    promoted = promote_if_better(MlflowClient(server), "mnist-convnet", run_id, 0.9)
    assert promoted.endswith("is now models:/mnist-convnet@champion")
    port = free_port()
    mlflow = str(Path(sys.executable).parent / "mlflow")
    command = [mlflow, "models", "serve", "-m", "models:/mnist-convnet@champion", "--env-manager", "local",
               "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
    # `mlflow models serve` execs `uvicorn` from PATH: start() gives it this environment's bin/
    process = start(
        command, f"http://127.0.0.1:{port}/ping", cwd=project, env={"MLFLOW_TRACKING_URI": server}
    )
    try:
        data = torch.load(project / "data/processed/mnist.pt", weights_only=True)
        images, labels = data["test_images"][:20].numpy(), data["test_labels"][:20].numpy()
        pixels = invoke(port, {"dataframe_records": [{"pixels": image.tolist()} for image in images]})
        pngs = [png_bytes(image) for image in images]  # README's curl: the files' bytes, base64
        encoded = invoke(port, {"dataframe_records": [{"image": base64.b64encode(b).decode()} for b in pngs]})
        refused = invoke(port, {"dataframe_records": [{"image": base64.b64encode(b"no image").decode()}]})
    finally:
        stop(process)
    assert pixels[0] == 200, pixels[1]
    digits = [p["digit"] for p in pixels[1]]
    assert digits == [int(np.argmax(p["probabilities"])) for p in pixels[1]]
    assert np.mean(np.array(digits) == labels) >= 0.8
    # base64 in JSON carries the files' bytes: the same answers as the model loaded here gives them
    local = mlflow_pyfunc_answers(server, pngs)
    assert encoded[0] == 200 and [(p["digit"], round(p["probability"], 5)) for p in encoded[1]] == local
    assert refused[0] == 400 and "row 0's image is not a readable image" in refused[1]["message"]


