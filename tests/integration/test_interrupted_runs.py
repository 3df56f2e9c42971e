"""Faults through the real CLI: SIGKILL, SIGTERM and Ctrl-C mid-training, resume, runs left RUNNING,
a diverging training, a read-only model directory, concurrent first runs. Each test has its own
project copy: none depends on what another left behind."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from ..conftest import ROOT, Tiny, copy_project, run_cli, user_env, write_mirror

pytestmark = pytest.mark.slow

EPOCHS = 3


@dataclass
class Workspace:
    project: Path
    mirror: Path
    raw: dict

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(f"sqlite:///{self.project / 'mlflow.db'}")

    def runs(self):
        experiment = self.client.get_experiment_by_name("mnist-convnet")
        return self.client.search_runs([experiment.experiment_id]) if experiment else []

    def command(self, *extra: str, signal: str | None = None, at: tuple[int, int] = (1, 3)) -> list[str]:
        """`python src/train.py` on tiny data; with `signal`, a real signal to itself at (epoch, batch),
        once: a rerun of the very same command (what a resume requires) runs through."""
        args = [
            "python",
            "src/train.py",
            *Tiny(self.raw).overrides(),
            f"trainer.max_epochs={EPOCHS}",
        ]
        args += ["callbacks.progress_bar.refresh_rate=0", "mlflow.log_model=false", *extra]
        if signal:
            args += ["+callbacks.kill._target_=tests.support.SignalOnce", f"+callbacks.kill.signal={signal}",
                     f"+callbacks.kill.epoch={at[0]}", f"+callbacks.kill.batch={at[1]}",
                     f"+callbacks.kill.marker={self.project.parent / f'signalled-{signal}'}"]  # fmt: skip
        return args

    def env(self) -> dict[str, str]:
        return {"MNIST_MIRROR": str(self.mirror), "PYTHONPATH": str(ROOT)}

    def train(self, *extra: str, **kwargs) -> subprocess.CompletedProcess:
        return run_cli(self.command(*extra, **kwargs), cwd=self.project, env=self.env())

    def evaluate(self) -> subprocess.CompletedProcess:
        args = ["python", "src/evaluate.py", *Tiny(self.raw).overrides()]
        return run_cli(args, cwd=self.project, env=self.env())

    def md5s(self) -> dict[str, str]:
        files = [p for d in ("models", "reports") for p in sorted((self.project / d).glob("*"))]
        return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in files}


def new_workspace(base: Path, raw: dict) -> Workspace:
    return Workspace(copy_project(base / "project"), write_mirror(base / "mirror", raw), raw)


@pytest.fixture
def ws(tmp_path, tiny_raw) -> Workspace:
    return new_workspace(tmp_path, tiny_raw)


def last_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


def histories(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    keys = client.get_run(run_id).data.metrics
    return {k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)] for k in keys}


def test_a_training_killed_by_sigkill_resumes_in_its_own_run_exactly_as_if_never_stopped(
    ws, tmp_path, tiny_raw
):
    killed = ws.train(signal="SIGKILL")
    assert killed.returncode == -9
    (run,) = ws.runs()
    assert run.info.status == "RUNNING"  # the dead process could not close it
    assert not (ws.project / "models").exists()  # no outputs from an unfinished training

    refused = ws.train("model.activation=tanh", "resume=true", signal="SIGKILL")
    assert refused.returncode == 2
    assert last_line(refused) == (
        f"error: cannot resume run {run.info.run_id}: this config differs from the one it was trained "
        "with (model.activation relu -> tanh); rerun with its settings, or resume=false to start a new run"
    )
    resumed = ws.train(signal="SIGKILL")  # the same command
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming run {run.info.run_id} from " in resumed.stdout
    (run,) = ws.runs()
    assert run.info.status == "FINISHED" and run.data.tags["resumed"] == "1"
    history = (ws.project / "reports" / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history] == ["epoch", "1", "2", "3"]
    logged = histories(ws.client, run.info.run_id)
    for key in ("train/loss", "train/acc", "val/loss", "val/acc", "train/lr"):
        assert len(logged[key]) == EPOCHS, key  # every epoch once
    steps = [step for step, _ in logged["train/loss_step"]]
    assert steps == sorted(set(steps))  # no step logged twice

    # the same command never interrupted: identical weights and identical metric histories
    other = new_workspace(tmp_path / "uninterrupted", tiny_raw)
    (other.project.parent / "signalled-SIGKILL").touch()
    assert other.train(signal="SIGKILL").returncode == 0
    (straight,) = other.runs()
    assert histories(other.client, straight.info.run_id) == logged
    weights = [
        torch.load(w.project / "models" / "last.ckpt", weights_only=True)["state_dict"] for w in (ws, other)
    ]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_sigterm_and_ctrl_c_exit_non_zero_and_leave_the_previous_outputs_whole(ws):
    assert ws.train().returncode == 0
    before, (finished,) = ws.md5s(), ws.runs()
    stopped = {}
    for seed, (signal, code) in enumerate([("SIGTERM", 143), ("SIGINT", 130)], start=5):
        result = ws.train(f"seed={seed}", signal=signal)
        assert result.returncode == code
        (run,) = [r for r in ws.runs() if r.info.run_id not in (finished.info.run_id, *stopped.values())]
        assert run.info.status == "KILLED" and run.data.tags["end_reason"] == f"interrupted by {signal}"
        assert last_line(result) == (
            f"stopped: interrupted by {signal}; run {run.info.run_id} marked KILLED; its checkpoints are "
            f"kept in {ws.project / 'checkpoints' / run.info.run_id}/ and the same command resumes it"
        )
        assert ws.md5s() == before  # checkpoints, history, metrics and run id: still the finished run's
        stopped[signal] = run.info.run_id
    # the second saw the first's interrupted training, made with another seed, and left it alone
    (note,) = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert note.startswith(
        f"note: {ws.project / 'checkpoints' / stopped['SIGTERM']} holds an interrupted training"
    )
    assert "seed 5 -> 6" in note

    # evaluate logs into the run that made models/ (before, it took the interrupted weights)
    evaluated = ws.evaluate()
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert "test/acc" in ws.client.get_run(finished.info.run_id).data.metrics
    assert not any("test/acc" in ws.client.get_run(r).data.metrics for r in stopped.values())
    run_info = ws.project / "reports" / "mlflow_run.json"
    run_info.unlink()
    missing = ws.evaluate()
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert last_line(missing) == (
        f"error: {run_info} is missing: it names the MLflow run to log into; rerun the train stage "
        "(dvc repro train, or python src/train.py)"
    )


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
