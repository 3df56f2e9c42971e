"""`python src/search.py` for real: trials in-process and in worker processes, on the embedded
storage and on a real PostgreSQL, pruned, failed, killed, signalled, rerun; what MLflow shows."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import time

import optuna
import psutil
import pytest
from mlflow import MlflowClient
from sqlalchemy.pool import NullPool

from ..conftest import Tiny, free_port, run_cli, user_env
from .workspace import Workspace

pytestmark = pytest.mark.slow

# lr 0.003 learns, 1e-7 does not (pruned at its first epoch), 1e12 diverges (a failed trial)
SPACE = """\
name: tiny
n_trials: 4
space:
  model.activation: {choices: [relu, elu]}
  optimizer.lr: {choices: [0.003, 1.0e-7, 1.0e+12]}
"""


def search_command(ws: Workspace, *extra: str) -> list[str]:
    (ws.project / "conf" / "search" / "tiny.yaml").write_text(SPACE)
    return [
        "python", "src/search.py", "search=tiny", *Tiny(ws.raw).overrides(), "trainer.max_epochs=3",
        "callbacks.progress_bar.refresh_rate=0", "search.startup_trials=1", "search.warmup_epochs=0",
        "search.heartbeat_s=1", "search.grace_s=3", *extra,
    ]  # fmt: skip


def run_search(ws: Workspace, *extra: str) -> subprocess.CompletedProcess:
    return run_cli(search_command(ws, *extra), cwd=ws.project, env=ws.env())


@functools.cache
def storage_of(url: str) -> optuna.storages.RDBStorage:
    """One storage per URL, holding no connection between reads: the tests poll the study many
    times, and a new pooled engine per poll ran a PostgreSQL out of its 100 connections in CI."""
    return optuna.storages.RDBStorage(url, engine_kwargs={"poolclass": NullPool})


def study_of(url: str, name: str = "tiny") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage_of(url))


def runs(client: MlflowClient) -> list:
    experiment = client.get_experiment_by_name("mnist-convnet")
    return client.search_runs([experiment.experiment_id], max_results=1000) if experiment else []


def test_a_search_prunes_fails_and_completes_trials_reports_and_makes_the_winner_and_a_rerun_continues_it(ws):
    url = f"sqlite:///{ws.project / 'optuna.db'}"  # the embedded default: the project root, no server
    # the first three points queued (Optuna runs queued points first): one of each kind of ending
    queued = optuna.create_study(study_name="tiny", storage=url, direction="maximize")
    for lr in (0.003, 1.0e-7, 1.0e12):
        queued.enqueue_trial({"model.activation": "relu", "optimizer.lr": lr})
    first = run_search(ws, "search.n_trials=5")
    assert first.returncode == 0, first.stderr[-3000:]
    study = study_of(url)
    states = [t.state.name for t in study.trials]
    assert len(states) == 5 and states.count("COMPLETE") + states.count("PRUNED") == 5
    diverged = [t for t in study.trials if "diverged" in t.user_attrs]
    pruned = [t for t in study.trials if t.state.name == "PRUNED" and t not in diverged]
    assert diverged and pruned and "COMPLETE" in states, states  # each kind of ending
    # a diverged trial is pruned (so TPE learns from it; a failed trial teaches it nothing)
    assert all(t.state.name == "PRUNED" and t.params["optimizer.lr"] == 1.0e12 for t in diverged)
    assert all(t.params["optimizer.lr"] == 1.0e-7 for t in pruned)

    report = json.loads((ws.project / "reports" / "search.json").read_text())
    best = max((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    assert report["best"]["trial"] == best.number and report["best"]["val_acc"] == best.value
    assert report["trials"] == {"complete": states.count("COMPLETE"), "pruned": states.count("PRUNED"),
                                "failed": 0, "surplus": 0}  # fmt: skip
    assert report["best"]["params"] == best.params
    assert report["wall_s"] > 0
    assert {p.name for p in (ws.project / "reports" / "search").glob("*.png")} >= {
        "optimization_history.png", "param_importances.png", "slice.png"}  # fmt: skip

    client = ws.client
    all_runs = runs(client)
    parent = next(r for r in all_runs if r.info.run_name == "search: tiny")
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["search.study"] == "tiny"
    assert parent.data.tags["search.storage"] == url
    space = json.loads(parent.data.tags["search.space"])
    assert space["optimizer.lr"]["attributes"]["choices"] == [0.003, 1e-7, 1e12]
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "figures")} >= {"figures/slice.png"}
    assert parent.data.metrics["best/val_acc"] == best.value
    children = [r for r in all_runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    trial_runs = {int(r.data.tags["search.trial"]): r for r in children if "search.trial" in r.data.tags}
    assert sorted(trial_runs) == [t.number for t in study.trials]  # every trial, one child run each
    expected_status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}
    for trial in study.trials:
        run = trial_runs[trial.number]
        assert run.data.tags["search.state"] == trial.state.name
        status = "FAILED" if trial in diverged else expected_status[trial.state.name]
        assert run.info.status == status, (trial.number, run.info.status)
        if trial in diverged:
            assert "diverged" in run.data.tags["end_reason"]
        assert not any(k.startswith("test/") for k in run.data.metrics)  # no trial sees test data
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
    # the winner: the best trial trained again (the same val/acc), then tested and registered
    winner = next(r for r in children if "search.winner_of_trial" in r.data.tags)
    assert int(winner.data.tags["search.winner_of_trial"]) == best.number

    def val_acc(run) -> list[float]:
        return [m.value for m in client.get_metric_history(run.info.run_id, "val/acc")]

    assert val_acc(winner) == val_acc(trial_runs[best.number]) and max(val_acc(winner)) == best.value
    assert "test/acc" in winner.data.metrics
    versions = client.search_model_versions("name='mnist-convnet'")
    assert [v.run_id for v in versions] == [winner.info.run_id]  # trials register nothing
    assert not list((ws.project / "searches" / "tiny").glob("trial-*"))  # a trial's files go with it

    # rerun with a larger total: only the missing trial runs, numbered after the others
    before = len(study.trials)
    again = run_search(ws, "search.n_trials=6")
    assert again.returncode == 0, again.stderr[-3000:]
    study = study_of(url)
    assert [t.number for t in study.trials] == list(range(len(study.trials)))
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials) == 6
    assert len(study.trials) == before + 1
    parents = [r for r in runs(client) if r.info.run_name == "search: tiny"]
    assert [p.info.run_id for p in parents] == [parent.info.run_id]  # one run per study, continued
    assert parents[0].info.status == "FINISHED"

    # the same study name with another space: refused before anything runs, naming the difference
    count = len(runs(client))
    other = run_search(ws, "search.n_trials=6", "+search.space.model.activation={choices:[relu,tanh]}")
    assert other.returncode == 2
    line = other.stderr.strip().splitlines()[-1]
    assert line.startswith("error: study 'tiny' was made with another search: model.activation: "), line
    assert "search.study=" in line
    assert len(runs(client)) == count and len(study_of(url).trials) == len(study.trials)


def test_bad_spaces_and_storages_end_in_one_line_before_any_run_or_trial(ws, postgres):
    def refused(*extra: str) -> str:
        result = run_search(ws, *extra)
        assert result.returncode == 2, result.stderr[-2000:]
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith("error: ") and "Traceback" not in result.stderr, result.stderr[-2000:]
        return lines[-1]

    assert "search.space.model.nonsense is not a key of the config" in refused(
        "+search.space.model.nonsense={choices:[1,2]}")  # fmt: skip
    assert "search.space.optimizer.lr: `low <= high` must hold, but got (low=0.1, high=0.01)" in refused(
        "+search.space.optimizer.lr={low:0.1,high:0.01}")  # fmt: skip
    assert "search.space.optimizer.lr: `low > 0` must hold for `log=True`" in refused(
        "+search.space.optimizer.lr={low:0.0,high:0.01,log:true}")  # fmt: skip
    unknown = refused("+search.space.optimizer={choices:[adam,adagrad]}")
    assert "optimizer=adagrad is not a known choice" in unknown
    nobody = f"postgresql+psycopg2://search:pw@127.0.0.1:{free_port()}/optuna"
    assert "cannot open the search's storage" in refused(f"search.storage={nobody}")
    wrong = postgres.url(password="wrong-password")
    line = refused(f"search.storage={wrong}")
    assert "cannot open the search's storage" in line and "password authentication failed" in line
    assert "wrong-password" not in line  # the URL shown without its password
    assert runs(ws.client) == []
    assert not (ws.project / "optuna.db").exists()


def worker_processes(parent: subprocess.Popen) -> list[psutil.Process]:
    """The search's worker processes: the same command, started by search.workers=N."""
    children = psutil.Process(parent.pid).children()
    return [p for p in children if "search.workers=1" in p.cmdline()]


def wait_for(condition, timeout: float, what: str, process: subprocess.Popen | None = None):
    """Poll `condition` until it holds; fail at once, with the search's output, if `process` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := condition():
            return found
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            said = f"{(out or '')[-2000:]}\n{(err or '')[-3000:]}"
            raise AssertionError(f"the search ended ({process.returncode}) before {what}:\n{said}")
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_workers_on_postgres_retry_a_killed_workers_trial_and_reach_exactly_the_total(ws, postgres):
    postgres.create_database("killed")
    url = postgres.url("killed")
    space = ["+search.space.optimizer.lr={choices:[0.003]}", "search.pruner=none"]  # every trial finishes
    command = search_command(ws, "search.workers=2", f"search.storage={url}", "search.n_trials=4",
                             "+callbacks.slow._target_=tests.support.SlowSteps", *space)  # fmt: skip
    process = subprocess.Popen(command, cwd=ws.project, env=user_env(ws.env()), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        running = wait_for(lambda: [t for t in study_of(url).trials if t.state.name == "RUNNING"
                                    and "mlflow_run_id" in t.user_attrs] if _exists(url) else None,
                           timeout=180, what="a trial in training", process=process)  # fmt: skip
        victim_trial = running[0]
        two = wait_for(lambda: len(worker_processes(process)) == 2 and worker_processes(process), 30, "both")
        # the worker running that trial: its training run's owner tag names its PID
        owner = int(MlflowClient(ws.client.tracking_uri).get_run(victim_trial.user_attrs["mlflow_run_id"])
                    .data.tags["process.pid"])  # fmt: skip
        victim = next(w for w in two if w.pid == owner)
        victim.send_signal(signal.SIGKILL)
        out, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, out[-3000:]
    assert f"signal {signal.SIGKILL.value}" in out

    study = study_of(url)
    killed = next(t for t in study.trials if t.number == victim_trial.number)
    assert killed.state.name == "FAIL"
    retry = next(t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number)
    assert retry.params == killed.params and retry.state.name == "COMPLETE"
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials) == 4  # exactly the total
    killed_run = ws.client.get_run(killed.user_attrs["mlflow_run_id"])
    assert killed_run.info.status == "FAILED"
    assert "heartbeat" in killed_run.data.tags["end_reason"]
    assert not [r.info.run_id for r in runs(ws.client) if r.info.status == "RUNNING"]
    # the two workers each trained: their runs have two different owner PIDs
    owners = {r.data.tags.get("process.pid") for r in runs(ws.client) if "search.trial" in r.data.tags}
    assert len(owners) >= 2

    rerun = run_cli(command, cwd=ws.project, env=ws.env())
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert len(study_of(url).trials) == len(study.trials)  # nothing more to do: no trial added


def _exists(url: str) -> bool:
    try:
        study_of(url)
        return True
    except Exception:  # not made yet, or being made (the search creates the tables meanwhile)
        return False


def test_sigterm_fails_the_running_trial_exits_in_seconds_and_the_same_command_continues(ws):
    slow = "+callbacks.slow._target_=tests.support.SlowSteps"
    command = search_command(ws, "search.n_trials=2", "+search.space.optimizer.lr={choices:[0.003]}",
                             "search.pruner=none", slow, "+callbacks.slow.seconds=0.4")  # fmt: skip
    url = f"sqlite:///{ws.project / 'optuna.db'}"
    process = subprocess.Popen(command, cwd=ws.project, env=user_env(ws.env()), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        wait_for(lambda: (ws.project / "optuna.db").exists() and _exists(url) and any(
            t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs for t in study_of(url).trials),
            timeout=300, what="a trial in training", process=process)  # fmt: skip
        time.sleep(1.0)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
        seconds = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, err[-2000:]
    assert seconds < 15
    assert err.strip().splitlines()[-1].startswith("stopped: interrupted by SIGTERM")
    study = study_of(url)
    stopped = [t for t in study.trials if t.state.name == "FAIL"]
    assert len(stopped) == 1 and not [t for t in study.trials if t.state.name == "RUNNING"]
    assert ws.client.get_run(stopped[0].user_attrs["mlflow_run_id"]).info.status == "KILLED"
    parent = next(r for r in runs(ws.client) if r.info.run_name == "search: tiny")
    assert parent.info.status == "KILLED"

    again = run_cli(command, cwd=ws.project, env=ws.env())
    assert again.returncode == 0, again.stderr[-2000:]
    study = study_of(url)
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == 2
    assert ws.client.get_run(parent.info.run_id).info.status == "FINISHED"
    assert os.path.exists(ws.project / "reports" / "search.json")


def test_dvc_repro_of_the_search_pipeline_searches_then_trains_tests_and_registers_the_winner(
    tmp_path, tiny, tiny_mirror
):
    import shutil

    import yaml

    from ..conftest import ROOT, copy_project, git

    project = copy_project(tmp_path / "project")
    tiny.shrink(project)
    pipeline = project / "pipelines" / "search"
    (pipeline / ".dvc").mkdir(parents=True)  # a DVC project of its own
    for name in ("dvc.yaml", "winner.py", ".gitignore", ".dvc/config", ".dvc/.gitignore"):
        shutil.copy2(ROOT / "pipelines" / "search" / name, pipeline / name)
    params = {"space": "default", "study": "pipeline-default", "n_trials": 2, "epochs": 1, "workers": 1}
    (pipeline / "params.yaml").write_text(yaml.safe_dump({"search": params}))
    git(project, "add", "-A")
    git(project, "commit", "-qm", "tiny search")
    env = {"MNIST_MIRROR": str(tiny_mirror)}
    done = run_cli(["dvc", "--cd", "pipelines/search", "repro"], cwd=project, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((pipeline / "reports" / "search.json").read_text())
    assert summary["study"] == "pipeline-default"
    assert summary["trials"]["complete"] + summary["trials"]["pruned"] == 2
    metrics = json.loads((pipeline / "winner" / "metrics.json").read_text())
    assert "test/acc" in metrics
    assert not (project / "models").exists()  # the main pipeline's training did not run: only its data
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    winner_run = json.loads((pipeline / "winner" / "mlflow_run.json").read_text())["run_id"]
    run = client.get_run(winner_run)
    assert run.data.tags["mlflow.parentRunId"] == summary["mlflow_run_id"]
    assert [v.run_id for v in client.search_model_versions("name='mnist-convnet'")] == [winner_run]
    status = run_cli(["dvc", "--cd", "pipelines/search", "status", "--json"], cwd=project)
    assert json.loads(status.stdout) == {"main_data": ["always changed"]}, status.stdout  # nothing else
