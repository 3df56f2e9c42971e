"""Queued DVC experiments (`dvc exp run --queue`, `dvc queue start -j 2`) on tiny data: each runs the
real stages in its own workspace, in parallel, and lands in the project's MLflow store."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time

import pytest
from mlflow import MlflowClient

from ..conftest import copy_project, git, run_cli, user_env, write_mirror

pytestmark = pytest.mark.slow


def wait_for_queue(project, env, timeout_s: float = 600) -> str:
    """`dvc queue status` once no experiment is queued or running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = run_cli(["dvc", "queue", "status"], cwd=project, env=env).stdout
        if "Queued" not in status and "Running" not in status:
            return status
        time.sleep(3)
    raise TimeoutError(f"the queue did not empty in {timeout_s} s:\n{status}")


def test_queued_experiments_run_two_at_a_time_and_each_lands_in_mlflow(tmp_path, tiny):
    project = copy_project(tmp_path / "project")
    tiny.shrink(project)
    env = {"MNIST_MIRROR": str(write_mirror(tmp_path / "mirror", tiny.raw))}  # the workers inherit it
    git(project, "add", "-A")
    git(project, "commit", "-qm", "tiny data")  # each queued experiment runs every stage from this commit

    queued = run_cli(["dvc", "exp", "run", "--queue", "-S", "model.activation=relu,sigmoid",
                      "-S", "trainer.max_epochs=1"], cwd=project, env=env)  # fmt: skip
    assert queued.returncode == 0 and queued.stdout.count("Queued experiment") == 2, queued.stderr
    # `dvc queue start` leaves its workers running in the background with its output: a file, not a
    # pipe a test would wait on until the last worker exits (a celery worker may linger after its task)
    with (tmp_path / "queue-start.log").open("w") as log:
        started = subprocess.run(["dvc", "queue", "start", "-j", "2"], cwd=project, env=user_env(env),
                                 stdout=log, stderr=subprocess.STDOUT, timeout=120)  # fmt: skip
    assert started.returncode == 0, (tmp_path / "queue-start.log").read_text()
    try:
        status = wait_for_queue(project, env)
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):  # a lingering worker must not outlive the test
            run_cli(["dvc", "queue", "stop", "--kill"], cwd=project, env=env, timeout=60)
    assert status.count("Success") == 2, status

    shown = json.loads(run_cli(["dvc", "exp", "show", "--json"], cwd=project, env=env).stdout)
    experiments = {
        rev["name"]: rev["data"]
        for row in shown
        for exp in row.get("experiments") or []
        for rev in exp["revs"]
    }
    activations = {
        name: data["params"]["params.yaml"]["data"]["model"]["activation"]
        for name, data in experiments.items()
    }
    assert sorted(activations.values()) == ["relu", "sigmoid"]
    assert all("test/acc" in data["metrics"]["reports/metrics.json"]["data"] for data in experiments.values())

    client = MlflowClient(
        f"sqlite:///{project / 'mlflow.db'}"
    )  # the project's store, not the temp workspaces'
    runs = client.search_runs([client.get_experiment_by_name("mnist-convnet").experiment_id])
    by_experiment = {r.data.tags.get("dvc.exp_name"): r for r in runs if r.data.tags.get("dvc.exp_name")}
    assert set(by_experiment) == set(activations)
    for name, run in by_experiment.items():
        assert run.info.status == "FINISHED" and run.info.run_name.startswith(f"{name}: ")
        assert (
            run.data.params["model.activation"] == activations[name]
            and run.data.params["trainer.max_epochs"] == "1"
        )
        assert "test/acc" in run.data.metrics  # evaluate, in the same queued workspace, found its run
    versions = client.search_model_versions("name='mnist-convnet'")
    assert {v.run_id for v in versions} >= {r.info.run_id for r in by_experiment.values()}
    assert not list((project / ".dvc" / "tmp").rglob("mlflow.db"))
