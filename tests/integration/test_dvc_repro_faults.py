"""`dvc repro` in a project of its own, on tiny data: an interrupted train stage, a stale params.yaml."""

from __future__ import annotations

import pytest

from digitpipe.cli import stage_config

from ..conftest import ROOT, copy_project, run_cli, write_mirror
from .test_dvc_pipeline import mlflow_runs

pytestmark = pytest.mark.slow


def test_dvc_repro_after_an_interrupted_train_stage_resumes_it_in_the_same_run(tmp_path, tiny):
    project = copy_project(tmp_path / "project")
    # a SIGTERM in the second epoch of the train stage, once: a callback in conf/ (not a knob: the
    # stages' config, reports/stage_config.yaml, carries it)
    kill = {"_target_": "tests.support.SignalOnce", "signal": "SIGTERM", "epoch": 1, "batch": 2,
            "marker": str(tmp_path / "signalled")}  # fmt: skip
    tiny.shrink(project, {f"callbacks.kill.{key}": value for key, value in kill.items()})
    assert stage_config(project)["callbacks"]["kill"]["epoch"] == 1
    env = {"MNIST_MIRROR": str(write_mirror(tmp_path / "mirror", tiny.raw)), "PYTHONPATH": str(ROOT)}

    stopped = run_cli(["dvc", "repro"], cwd=project, env=env)
    assert stopped.returncode != 0
    assert "failed to reproduce 'train'" in stopped.stderr and "exited with 143" in stopped.stderr
    client, (run,) = mlflow_runs(project)
    assert run.info.status == "KILLED"

    resumed = run_cli(["dvc", "repro"], cwd=project, env=env)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"resuming run {run.info.run_id} from " in resumed.stdout
    client, (run,) = mlflow_runs(project)
    assert run.info.status == "FINISHED" and run.data.tags["resumed"] == "1"
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 2  # each epoch once
    assert "test/acc" in run.data.metrics  # evaluate logged into it
    status = run_cli(["dvc", "status"], cwd=project, env=env)
    assert "Data and pipelines are up to date." in status.stdout, status.stdout


def test_dvc_repro_on_a_params_yaml_that_conf_no_longer_composes_to_stops_in_one_line(tmp_path, tiny):
    project = copy_project(tmp_path / "project")
    tiny.shrink(project)
    model = project / "conf" / "model" / "convnet.yaml"
    model.write_text(model.read_text().replace("activation: relu", "activation: sigmoid"))
    env = {"MNIST_MIRROR": str(write_mirror(tmp_path / "mirror", tiny.raw))}
    result = run_cli(["dvc", "repro"], cwd=project, env=env)
    assert result.returncode != 0
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "model.activation 'relu' -> 'sigmoid'" in line and "run `dvc exp run`" in line
    assert "Traceback" not in result.stderr
    assert not (project / "data" / "raw").exists() and not (project / "models").exists()  # nothing ran
