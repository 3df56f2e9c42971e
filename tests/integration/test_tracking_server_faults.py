"""A tracking server that is down, dies mid-training, or is not an MLflow server: one line, bounded
waits, nothing lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from ..conftest import ROOT, copy_project, free_port, run_cli, write_mirror
from .servers import start_server

pytestmark = pytest.mark.slow


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


def test_a_server_that_dies_mid_training_costs_seconds_and_the_run_goes_on_when_it_is_back(tmp_path, tiny):
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
