"""Runs left RUNNING by dead processes, a diverging training, a read-only model directory,
concurrent first runs: through the real CLI, each in a project copy of its own (workspace.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
import torch

from ..conftest import run_cli, user_env
from .workspace import last_line

pytestmark = pytest.mark.slow


def test_runs_of_dead_processes_are_closed_and_a_live_trainings_run_is_not_touched(ws):
    live = subprocess.Popen(ws.command("trainer.max_epochs=500"), cwd=ws.project, env=user_env(ws.env()),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not ws.runs() and time.monotonic() < deadline:
            time.sleep(0.5)
        (alive,) = ws.runs()
        assert ws.train("seed=3", signal="SIGKILL").returncode == -9  # a second training, killed
        (dead,) = [r for r in ws.runs() if r.info.run_id != alive.info.run_id]
        assert dead.info.status == "RUNNING"

        tidy = run_cli(["python", "src/runs.py"], cwd=ws.project, env=ws.env())
        assert tidy.returncode == 0, tidy.stderr[-2000:]
        assert f"marked KILLED {dead.info.run_id}" in tidy.stdout
        assert f"run {dead.info.run_id} in " in tidy.stdout  # listed as resumable
        status = {r.info.run_id: r.info.status for r in ws.runs()}
        assert status == {alive.info.run_id: "RUNNING", dead.info.run_id: "KILLED"}
        assert live.poll() is None
    finally:
        live.terminate()
        live.wait(timeout=60)
    assert ws.client.get_run(alive.info.run_id).info.status == "KILLED"  # closed by itself on SIGTERM


@pytest.mark.parametrize("steps_per_batch", [1, 6])  # Lightning's steps, or the module's (step_plan.py)
def test_a_diverging_training_stops_in_one_line_and_nothing_of_it_is_saved_or_registered(ws, steps_per_batch):
    steps = f"train_step.steps_per_batch={steps_per_batch}"
    result = ws.train("optimizer=sgd", "optimizer.lr=1e6", "mlflow.log_model=true", steps)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert last_line(result).startswith("error: training diverged: the training loss became NaN or infinite")
    (run,) = ws.runs()
    assert run.info.status == "FAILED"
    assert ws.client.search_model_versions("name='mnist-convnet'") == []
    assert not (ws.project / "models").exists() and not (ws.project / "reports").exists()
    assert [p.name for p in (ws.project / "checkpoints").iterdir() if p.is_dir()] == []


@pytest.mark.skipif(
    shutil.which("unshare") is None, reason="needs unshare (util-linux) for a read-only mount"
)
def test_a_read_only_model_directory_stops_the_training_before_it_starts(ws):
    models = ws.project / "models"
    models.mkdir()
    script = f'mount --bind {models} {models} && mount -o remount,bind,ro {models} && exec "$@"'
    command = ["unshare", "-rm", "sh", "-c", script, "sh", *ws.command()]
    result = run_cli(command, cwd=ws.project, env=ws.env())
    assert result.returncode == 2, result.stderr[-2000:]
    assert last_line(result) == (
        f"error: cannot write to {models}/ (Read-only file system); make it writable or point the "
        "corresponding paths.* setting elsewhere"
    )
    assert ws.runs() == [] and list(models.iterdir()) == []


def test_four_trainings_started_at_once_in_a_fresh_clone_are_all_recorded(ws):
    commands = [ws.command("trainer.max_epochs=1", f"seed={seed}") for seed in range(4)]
    processes = [subprocess.Popen(c, cwd=ws.project, env=user_env(ws.env()), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for c in commands]  # fmt: skip
    outputs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0] * 4, "\n".join(err[-1500:] for _, err in outputs)
    runs = ws.runs()
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1", "2", "3"]
    # the outputs are one run's whole set: the checkpoint was trained in the run the record names
    recorded = json.loads((ws.project / "reports" / "mlflow_run.json").read_text())["run_id"]
    checkpoint = torch.load(ws.project / "models" / "best.ckpt", weights_only=True)
    assert checkpoint["run"]["run_id"] == recorded
