"""A real `mlflow server` and `mlflow models serve` on 127.0.0.1: remote logging, read-back, serving."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from ..conftest import copy_project, free_port, run_cli, tiny_overrides, user_env, write_mirror

pytestmark = pytest.mark.slow


def start(command: list[str], url: str, cwd: Path, env: dict | None = None, timeout: float = 90):
    """Start a server and wait until `url` answers."""
    process = subprocess.Popen(command, cwd=cwd, env=user_env(env),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return process
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(process.stderr.read()[-3000:]) from None
            time.sleep(0.5)
    process.kill()
    raise TimeoutError(f"{command[0]} did not answer at {url}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


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
def remote_run(server, tmp_path_factory, tiny_raw):
    base = tmp_path_factory.mktemp("remote")
    project = copy_project(base / "project")
    mirror = write_mirror(base / "mirror", tiny_raw)
    args = [
        "python",
        "src/train.py",
        *tiny_overrides(tiny_raw, project),
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


def test_the_registered_model_is_served_by_mlflow_models_serve(server, remote_run):
    project, _ = remote_run
    port = free_port()
    mlflow = str(Path(sys.executable).parent / "mlflow")
    command = [mlflow, "models", "serve", "-m", "models:/mnist-convnet/1", "--env-manager", "local",
               "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
    # `mlflow models serve` execs `uvicorn` from PATH: start() gives it this environment's bin/
    process = start(
        command, f"http://127.0.0.1:{port}/ping", cwd=project, env={"MLFLOW_TRACKING_URI": server}
    )
    try:
        data = torch.load(project / "data/processed/mnist.pt", weights_only=True)
        images, labels = data["test_images"][:20].float().numpy(), data["test_labels"][:20].numpy()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", json.dumps({"inputs": images.tolist()}).encode(),
            {"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as response:
            predictions = np.asarray(json.loads(response.read())["predictions"])
    finally:
        stop(process)
    assert predictions.shape == (20, 10)
    assert (predictions.argmax(axis=1) == labels).mean() >= 0.8


def test_an_unreachable_tracking_server_fails_fast_in_one_line(tmp_path, tiny_raw):
    project = copy_project(tmp_path / "project")
    started = time.monotonic()
    result = run_cli(["python", "src/train.py", *tiny_overrides(tiny_raw, project)], cwd=project,
                     env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"})  # fmt: skip
    assert time.monotonic() - started < 60
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: MLflow tracking server http://127.0.0.1:") and "unreachable" in last
    assert not (project / "models").exists() and not (project / "data").exists()
