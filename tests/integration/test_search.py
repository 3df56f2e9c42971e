"""`python src/search.py` for real: trials in-process and in worker processes, on the embedded
storage and on a real PostgreSQL, pruned, failed, killed, signalled, rerun; what MLflow shows."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import psutil
import pytest
from mlflow import MlflowClient
from sqlalchemy.pool import NullPool

from ..conftest import Tiny, free_port, run_cli, user_env
from .conftest import copy_of
from .workspace import Workspace, new_workspace

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


@dataclass
class Searched:
    """A project searched once (five trials on the embedded storage, the winner made), for the tests
    that only read it; a test that searches it again does so on its own copy (own_copy)."""

    ws: Workspace
    url: str

    @property
    def study(self) -> optuna.Study:
        return study_of(self.url)

    @property
    def parent(self):
        return next(r for r in runs(self.ws.client) if r.info.run_name == "search: tiny")

    def children(self) -> list:
        return [
            r
            for r in runs(self.ws.client)
            if r.data.tags.get("mlflow.parentRunId") == self.parent.info.run_id
        ]

    def trial_runs(self) -> dict:
        return {int(r.data.tags["search.trial"]): r for r in self.children() if "search.trial" in r.data.tags}

    def diverged(self) -> list:
        return [t for t in self.study.trials if "diverged" in t.user_attrs]

    def best(self):
        return max((t for t in self.study.trials if t.state.name == "COMPLETE"), key=lambda t: t.value)


@pytest.fixture(scope="module")
def searched(tmp_path_factory, tiny_raw) -> Searched:
    ws = new_workspace(tmp_path_factory.mktemp("searched"), tiny_raw)
    url = f"sqlite:///{ws.project / 'optuna.db'}"  # the embedded default: the project root, no server
    # the first three points queued (Optuna runs queued points first): one of each kind of ending
    queued = optuna.create_study(study_name="tiny", storage=url, direction="maximize")
    for lr in (0.003, 1.0e-7, 1.0e12):
        queued.enqueue_trial({"model.activation": "relu", "optimizer.lr": lr})
    done = run_search(ws, "search.n_trials=5")
    assert done.returncode == 0, done.stderr[-3000:]
    return Searched(ws, url)


def own_copy(searched: Searched, tmp_path: Path) -> Searched:
    """The searched project copied, for a test that runs a search in it."""
    project = copy_of(searched.ws.project, tmp_path / "project")
    return Searched(
        Workspace(project, searched.ws.mirror, searched.ws.raw), f"sqlite:///{project / 'optuna.db'}"
    )


def test_a_search_ends_with_exactly_its_total_of_complete_and_pruned_trials_one_of_each_kind(searched):
    states = [t.state.name for t in searched.study.trials]
    assert len(states) == 5 and states.count("COMPLETE") + states.count("PRUNED") == 5, states
    pruned = [t for t in searched.study.trials if t.state.name == "PRUNED" and t not in searched.diverged()]
    assert searched.diverged() and pruned and "COMPLETE" in states, states


def test_a_diverging_point_is_pruned_not_failed_and_its_run_ends_failed_saying_so(searched):
    """Pruned, so that TPE learns from it: a failed trial teaches it nothing."""
    diverged, trial_runs = searched.diverged(), searched.trial_runs()
    assert diverged and all(t.state.name == "PRUNED" and t.params["optimizer.lr"] == 1.0e12 for t in diverged)
    for trial in diverged:
        run = trial_runs[trial.number]
        assert run.info.status == "FAILED" and "diverged" in run.data.tags["end_reason"], run.data.tags


def test_a_point_that_does_not_learn_is_pruned_and_its_run_ends_killed_saying_when(searched):
    pruned = [t for t in searched.study.trials if t.state.name == "PRUNED" and "diverged" not in t.user_attrs]
    assert pruned and all(t.params["optimizer.lr"] == 1.0e-7 for t in pruned)
    trial_runs = searched.trial_runs()
    for trial in pruned:
        run = trial_runs[trial.number]
        assert run.info.status == "KILLED" and run.data.tags["end_reason"].startswith("pruned at epoch ")


def test_the_report_names_the_best_complete_trial_its_params_and_the_count_of_each_ending(searched):
    report = json.loads((searched.ws.project / "reports" / "search.json").read_text())
    best, states = searched.best(), [t.state.name for t in searched.study.trials]
    assert report["best"]["trial"] == best.number and report["best"]["val_acc"] == best.value
    assert report["best"]["params"] == best.params
    assert report["trials"] == {"complete": states.count("COMPLETE"), "pruned": states.count("PRUNED"),
                                "failed": 0, "surplus": 0}  # fmt: skip
    assert report["wall_s"] > 0


def test_optunas_figures_are_written_under_reports_and_logged_in_the_studys_run(searched):
    written = {p.name for p in (searched.ws.project / "reports" / "search").glob("*.png")}
    assert written >= {"optimization_history.png", "param_importances.png", "slice.png"}, written
    logged = {a.path for a in searched.ws.client.list_artifacts(searched.parent.info.run_id, "figures")}
    assert logged >= {"figures/optimization_history.png", "figures/slice.png"}, logged


def test_the_study_has_one_finished_run_tagged_with_its_name_storage_and_space_holding_the_best_val_acc(
    searched,
):
    parents = [r for r in runs(searched.ws.client) if r.info.run_name == "search: tiny"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    tags = parents[0].data.tags
    assert tags["search.study"] == "tiny" and tags["search.storage"] == searched.url
    assert json.loads(tags["search.space"])["optimizer.lr"]["attributes"]["choices"] == [0.003, 1e-7, 1e12]
    assert parents[0].data.metrics["best/val_acc"] == searched.best().value


def test_every_trial_has_one_child_run_whose_state_tag_and_status_say_how_it_ended(searched):
    trial_runs = searched.trial_runs()
    assert sorted(trial_runs) == [t.number for t in searched.study.trials]
    status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}
    for trial in searched.study.trials:
        run = trial_runs[trial.number]
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        assert run.data.tags["search.state"] == trial.state.name
        expected = "FAILED" if "diverged" in trial.user_attrs else status[trial.state.name]
        assert run.info.status == expected, (trial.number, run.info.status)


def test_no_trial_sees_test_data_registers_a_model_or_keeps_its_files(searched):
    trial_runs = {r.info.run_id: r for r in searched.trial_runs().values()}
    assert trial_runs and not [
        k for r in trial_runs.values() for k in r.data.metrics if k.startswith("test/")
    ]
    versions = searched.ws.client.search_model_versions("name='mnist-convnet'")
    assert not [v.version for v in versions if v.run_id in trial_runs]
    assert (searched.ws.project / "searches" / "tiny").is_dir()
    assert not list((searched.ws.project / "searches" / "tiny").glob("trial-*"))


def test_the_winner_is_the_best_trial_trained_again_to_the_same_history_then_tested_and_registered(searched):
    (winner,) = [r for r in searched.children() if "search.winner_of_trial" in r.data.tags]
    best, client = searched.best(), searched.ws.client
    assert int(winner.data.tags["search.winner_of_trial"]) == best.number

    def history(run) -> dict[str, list[float]]:  # val/acc alone: 1.0 at every epoch on the tiny data
        return {
            key: [m.value for m in client.get_metric_history(run.info.run_id, key)]
            for key in ("val/acc", "val/loss")
        }

    assert history(winner) == history(searched.trial_runs()[best.number])
    assert max(history(winner)["val/acc"]) == best.value
    assert "test/acc" in winner.data.metrics
    assert [v.run_id for v in client.search_model_versions("name='mnist-convnet'")] == [winner.info.run_id]
    assert (searched.ws.project / "searches" / "tiny" / "winner" / "models" / "best.ckpt").is_file()


def test_a_rerun_with_a_larger_total_runs_only_the_missing_trial_in_the_same_studys_run(searched, tmp_path):
    copy = own_copy(searched, tmp_path)
    before, parent = len(copy.study.trials), copy.parent
    again = run_search(copy.ws, "search.n_trials=6")
    assert again.returncode == 0, again.stderr[-3000:]
    trials = copy.study.trials
    assert len(trials) == before + 1 and [t.number for t in trials] == list(range(before + 1))
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == 6
    parents = [r for r in runs(copy.ws.client) if r.info.run_name == "search: tiny"]
    assert [(p.info.run_id, p.info.status) for p in parents] == [(parent.info.run_id, "FINISHED")]
    assert len(searched.study.trials) == before  # the shared project is left as it was


def test_the_same_study_with_another_space_is_refused_before_anything_runs_naming_the_difference(
    searched, tmp_path
):
    copy = own_copy(searched, tmp_path)
    count, trials = len(runs(copy.ws.client)), len(copy.study.trials)
    other = run_search(copy.ws, "+search.space.model.activation={choices:[relu,tanh]}")
    assert other.returncode == 2, other.stderr[-3000:]
    line = other.stderr.strip().splitlines()[-1]
    assert line.startswith("error: study 'tiny' was made with another search: model.activation: "), line
    assert "search.study=" in line
    assert len(runs(copy.ws.client)) == count and len(copy.study.trials) == trials


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
                           timeout=300, what="a trial in training", process=process)  # fmt: skip
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
