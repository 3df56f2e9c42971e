"""A real `mlflow server` and `mlflow models serve` on 127.0.0.1: remote logging, read-back, serving."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

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


@pytest.fixture(scope="module")
def served(server, remote_run):
    """`mlflow models serve` of models:/mnist-convnet@champion, as README runs it: (port, process)."""
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
    yield port, process
    stop(process)


def test_the_registered_model_is_served_by_mlflow_models_serve(server, remote_run, served):
    project, run_id = remote_run
    port, _ = served
    data = torch.load(project / "data/processed/mnist.pt", weights_only=True)
    images, labels = data["test_images"][:20].numpy(), data["test_labels"][:20].numpy()
    pixels = invoke(port, {"dataframe_records": [{"pixels": image.tolist()} for image in images]})
    pngs = [png_bytes(image) for image in images]  # README's curl: the files' bytes, base64
    encoded = invoke(port, {"dataframe_records": [{"image": base64.b64encode(b).decode()} for b in pngs]})
    refused = invoke(port, {"dataframe_records": [{"image": base64.b64encode(b"no image").decode()}]})
    assert pixels[0] == 200, pixels[1]
    digits = [p["digit"] for p in pixels[1]]
    assert digits == [int(np.argmax(p["probabilities"])) for p in pixels[1]]
    assert np.mean(np.array(digits) == labels) >= 0.8
    # base64 in JSON carries the files' bytes: the same answers as the model loaded here gives them
    local = mlflow_pyfunc_answers(server, pngs)
    assert encoded[0] == 200 and [(p["digit"], round(p["probability"], 5)) for p in encoded[1]] == local
    assert refused[0] == 400 and "row 0's image is not a readable image" in refused[1]["message"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    "body",
    [{"dataframe_records": [{"foo": 1}]}, {"dataframe_records": [{"Image": "aGk="}]},
     {"dataframe_split": {"columns": ["other"], "data": [[1]]}}, {"inputs": {"foo": [1]}},
     {"instances": [{"foo": 1}]}],
)  # fmt: skip
def test_a_request_with_no_known_column_is_a_400_naming_the_columns_in_every_format(served, body):
    status, answer = invoke(served[0], body)
    assert status == 400, answer
    assert "the request has neither an `image` column" in answer["message"], answer
    assert "nor a `pixels` column (28x28 integers 0..255)" in answer["message"]


def test_a_dark_digit_on_a_transparent_canvas_is_answered_as_on_white_and_a_blank_is_a_400(served):
    stroke = np.zeros((90, 60), dtype=np.uint8)
    stroke[10:80, 25:35] = 255
    on_white, on_canvas = io.BytesIO(), io.BytesIO()
    Image.fromarray(255 - stroke).save(on_white, "PNG")  # a dark '1' on opaque white
    Image.fromarray(np.dstack([np.zeros_like(stroke)] * 3 + [stroke])).save(on_canvas, "PNG")
    rows = [{"image": b64(on_white.getvalue())}, {"image": b64(on_canvas.getvalue())}]
    status, answers = invoke(served[0], {"dataframe_records": rows})
    assert status == 200, answers
    assert answers[0]["digit"] == answers[1]["digit"]  # (the tiny test model's digit, whatever it is)
    assert answers[0]["probability"] == pytest.approx(answers[1]["probability"], abs=1e-4)
    blank = io.BytesIO()
    Image.new("RGBA", (60, 90), (0, 0, 0, 0)).save(blank, "PNG")  # a canvas nobody drew on
    status, answer = invoke(served[0], {"dataframe_records": [{"image": b64(blank.getvalue())}]})
    assert status == 400 and "row 0's image has no ink: every pixel" in answer["message"], answer


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (the server's workers)."""
    import psutil

    parent = psutil.Process(pid)
    total = 0
    for process in [parent, *parent.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total


WORST_CASE_CONCURRENT, MEMORY_CEILING = 4, 1536 * 2**20  # docs/operations.md


def test_concurrent_worst_case_images_stay_under_the_memory_ceiling_and_oversized_ones_are_refused(served):
    """Images at the largest size taken (4096x4096 pixels, ink everywhere), four at once: the
    served model's memory grows by less than MEMORY_CEILING; one pixel more is a 400, unread."""
    from concurrent.futures import ThreadPoolExecutor

    from digitpipe.serving.images import MAX_PIXELS

    port, process = served
    side = int(MAX_PIXELS**0.5)
    stripes = np.zeros((side, side, 4), dtype=np.uint8)
    stripes[:, ::8, 3] = 255  # black strokes on a transparent canvas: every conversion step runs
    worst = io.BytesIO()
    Image.fromarray(stripes).save(worst, "PNG")
    body = {"dataframe_records": [{"image": b64(worst.getvalue())}]}
    baseline, peak, done = tree_rss(process.pid), 0, threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(process.pid))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(WORST_CASE_CONCURRENT) as pool:
            answers = list(pool.map(lambda _: invoke(port, body), range(WORST_CASE_CONCURRENT)))
    finally:
        done.set()
        watcher.join()
    print(f"{WORST_CASE_CONCURRENT} worst-case requests ({len(worst.getvalue()):,} bytes each): the server "
          f"grew from {baseline / 2**20:.0f} MB to a peak of {peak / 2**20:.0f} MB")  # fmt: skip
    assert [s for s, _ in answers] == [200] * WORST_CASE_CONCURRENT, answers[0]
    assert peak - baseline < MEMORY_CEILING
    over = io.BytesIO()
    Image.new("1", (side + 1, side)).save(over, "PNG")
    status, answer = invoke(port, {"dataframe_records": [{"image": b64(over.getvalue())}]})
    assert status == 400 and f"{side + 1}x{side} pixels, over the limit of" in answer["message"], answer
