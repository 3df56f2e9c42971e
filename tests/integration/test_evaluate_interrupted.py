"""Ctrl-C in `python src/evaluate.py`, sent for real while it logs its figures: one line and 130,
and nothing of the evaluation published (reports/ as it was, no test metrics in the run or on the
model version); the same command then publishes it all."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from digitpipe.tracking.registry import ACCURACY_TAG

from ..conftest import Tiny, user_env
from .workspace import new_workspace

pytestmark = pytest.mark.slow


def test_ctrl_c_while_evaluate_logs_its_figures_is_one_line_130_and_publishes_nothing(tmp_path, tiny):
    ws = new_workspace(tmp_path, tiny.raw)
    trained = ws.train("mlflow.log_model=true")
    assert trained.returncode == 0, trained.stderr[-3000:]
    run_id = json.loads((ws.project / "reports" / "mlflow_run.json").read_text())["run_id"]
    before = ws.md5s()
    assert "metrics.json" not in before  # a first evaluation
    figures = Path(urlparse(ws.client.get_run(run_id).info.artifact_uri).path) / "figures"
    args = ["python", "src/evaluate.py", *Tiny(ws.raw).overrides()]
    process = subprocess.Popen(args, cwd=ws.project, env=user_env(ws.env()), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline and not any(figures.glob("*.png")):
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)  # as Ctrl-C does, the moment its first figure is in the run
    _, stderr = process.communicate(timeout=60)
    assert any(figures.glob("*.png")), "the signal came before the figures"
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (
        "stopped: interrupted by SIGINT; nothing of this evaluation was published (reports/ as it was, "
        "no test metrics in the run); run it again"
    )
    assert ws.md5s() == before  # no metrics.json, per_class.csv, predictions.csv or confusion matrix
    assert not [p for p in (ws.project / "reports").iterdir() if p.name.endswith(".tmp")]
    assert "test/acc" not in ws.client.get_run(run_id).data.metrics
    (version,) = ws.client.search_model_versions(f"run_id='{run_id}'")
    assert ACCURACY_TAG not in version.tags

    again = ws.evaluate()  # the same command: the whole set
    assert again.returncode == 0, again.stderr[-3000:]
    metrics = json.loads((ws.project / "reports" / "metrics.json").read_text())
    assert ws.client.get_run(run_id).data.metrics["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    (version,) = ws.client.search_model_versions(f"run_id='{run_id}'")
    assert float(version.tags[ACCURACY_TAG]) == pytest.approx(metrics["test/acc"], abs=1e-6)
