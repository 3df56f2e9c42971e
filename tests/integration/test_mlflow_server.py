"""A real `mlflow server` and `mlflow models serve` on 127.0.0.1: remote logging, read-back, serving."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
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

from ..conftest import ROOT, copy_project, free_port, run_cli, user_env, write_mirror

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


def test_an_unreachable_tracking_server_fails_fast_in_one_line(tmp_path, tiny):
    project = copy_project(tmp_path / "project")
    started = time.monotonic()
    result = run_cli(["python", "src/train.py", *tiny.overrides()], cwd=project,
                     env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"})  # fmt: skip
    assert time.monotonic() - started < 60
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: MLflow tracking server http://127.0.0.1:") and "unreachable" in last
    assert not (project / "models").exists() and not (project / "data").exists()


def start_server(root: Path, port: int) -> subprocess.Popen:
    """`mlflow server` in a process group of its own (its workers die with it), pgid in root/pgid."""
    mlflow = str(Path(sys.executable).parent / "mlflow")
    command = [mlflow, "server", "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
               "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1"]  # fmt: skip
    process = subprocess.Popen(command, cwd=root, env=user_env(), start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    (root / "pgid").write_text(str(process.pid))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return process
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("mlflow server did not start")


def test_a_server_that_dies_mid_training_costs_seconds_and_the_run_goes_on_when_it_is_back(
    tmp_path, tiny
):
    root, port = tmp_path / "server", free_port()
    root.mkdir()
    url = f"http://127.0.0.1:{port}"
    project = copy_project(tmp_path / "project")
    env = {"MNIST_MIRROR": str(write_mirror(tmp_path / "mirror", tiny.raw)), "MLFLOW_TRACKING_URI": url,
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    marker = tmp_path / "killed"
    args = ["python", "src/train.py", *tiny.overrides(), "trainer.max_epochs=3",
            "callbacks.progress_bar.refresh_rate=0", "mlflow.log_model=false", "mlflow.http.timeout_s=3",
            "mlflow.http.max_retries=2", "+callbacks.kill._target_=tests.support.SignalOnce",
            "+callbacks.kill.signal=SIGKILL", "+callbacks.kill.epoch=1", "+callbacks.kill.batch=2",
            f"+callbacks.kill.marker={marker}", f"+callbacks.kill.group_file={root / 'pgid'}"]  # fmt: skip
    server = start_server(root, port)
    failed = run_cli(args, cwd=project, env=env)
    seconds = time.time() - marker.stat().st_mtime  # from the server's death to the end of the command
    server.wait(timeout=30)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr, failed.stderr[-3000:]
    (run_dir,) = [p for p in (project / "checkpoints").iterdir() if p.is_dir()]
    unsent = run_dir / "unsent_metrics.csv"
    line = failed.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: MLflow store {url} failed while logging metrics (")
    assert line.endswith(f"the metrics it did not take are saved in {unsent}; its checkpoints are kept in "
                         f"{run_dir}/ and the same command resumes it")  # fmt: skip
    assert seconds < 30  # MLflow's own retries: 7 with backoff, a 120 s timeout each
    pending = unsent.read_text().splitlines()
    assert pending[0] == "key,value,step,timestamp" and len(pending) > 1
    assert (run_dir / "last.ckpt").is_file() and not (project / "models").exists()

    server = start_server(root, port)  # back, with the same store
    try:
        resumed = run_cli(args, cwd=project, env=env)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert f"({len(pending) - 1} unsent metrics sent)" in resumed.stdout
        client = MlflowClient(url)
        run = client.get_run(run_dir.name)
        assert run.info.status == "FINISHED"
        for key in ("train/loss", "val/acc"):
            assert len(client.get_metric_history(run.info.run_id, key)) == 3  # every epoch, once
        key, value, step, _ = pending[1].split(",")
        sent = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
        assert (int(step), float(value)) in sent
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_a_url_that_answers_but_is_not_an_mlflow_server_fails_the_check_in_one_line(tmp_path, tiny):
    port = free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    web = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        start_wait = time.monotonic()
        while time.monotonic() - start_wait < 30:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        project = copy_project(tmp_path / "project")
        result = run_cli(["python", "src/train.py", *tiny.overrides()], cwd=project,
                         env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"})  # fmt: skip
    finally:
        web.terminate()
        web.wait(timeout=10)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: http://127.0.0.1:{port} answers but is not an MLflow tracking server (GET /health gave "
        "'HTTP 404'); check the URL, or unset MLFLOW_TRACKING_URI to log to sqlite:///mlflow.db in the "
        "project root"
    )
    assert not (project / "mlflow.db").exists() and not (project / "data").exists()
