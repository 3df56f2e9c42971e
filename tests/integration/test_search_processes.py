"""The search as many processes on one study, as Optuna means it: independent commands, a rerun
after an interruption, `search.workers=N`, odd names and paths, every space; and what a user sees
when a setting, a space file or the database is wrong."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from ..conftest import copy_project, run_cli, user_env, write_mirror
from .test_search import _exists, run_search, runs, search_command, study_of, wait_for, worker_processes
from .workspace import Workspace

pytestmark = pytest.mark.slow

LR = "+search.space.optimizer.lr={low:1.0e-3,high:1.0e-2,log:true}"  # continuous: a repeat is no accident
QUICK = ["search.pruner=none", "trainer.max_epochs=1", LR]


def finished_points(url: str, name: str = "tiny") -> list[str]:
    trials = study_of(url, name).trials
    return [json.dumps(t.params, sort_keys=True) for t in trials if t.state.name in ("COMPLETE", "PRUNED")]


def start(ws: Workspace, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(search_command(ws, *extra), cwd=ws.project, env=user_env(ws.env()), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def test_two_commands_on_one_new_storage_and_a_rerun_after_an_interruption_never_train_a_point_twice(
    ws, postgres
):
    """Before: every process seeded TPE alike (trial 0 = trial 1, 2 = 3), a rerun repeated the last
    run's first point, and the second of two searches on a new database lost the table race."""
    postgres.create_database("two_commands")
    url = postgres.url("two_commands")
    # slowed from the start: callbacks are part of what a study's trials train with
    slow = ["+callbacks.slow._target_=tests.support.SlowSteps", "+callbacks.slow.seconds=0.2"]
    command = [f"search.storage={url}", "search.n_trials=4", "search.train_winner=false", *QUICK, *slow]
    both = [start(ws, *command) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in both]
    assert [p.returncode for p in both] == [0, 0], [o[1][-2000:] for o in outputs]
    assert len(finished_points(url)) == 4
    more = [*command[:1], "search.n_trials=6", *command[2:]]
    stopped = start(ws, *more)
    wait_for(lambda: any(t.state.name == "RUNNING" and t.number >= 4 and "mlflow_run_id" in t.user_attrs
                         for t in study_of(url).trials),
             timeout=300, what="a fifth trial in training", process=stopped)  # fmt: skip
    stopped.send_signal(signal.SIGINT)
    _, err = stopped.communicate(timeout=60)
    assert stopped.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("stopped: interrupted by SIGINT; trial ")
    again = run_search(ws, *more)
    assert again.returncode == 0, again.stderr[-2000:]
    points = finished_points(url)
    assert len(points) == 6 and len(set(points)) == 6, points
    (failed,) = [t for t in study_of(url).trials if t.state.name == "FAIL"]
    retry = next(t for t in study_of(url).trials if t.user_attrs.get("retry_of") == failed.number)
    assert retry.params == failed.params and retry.state.name == "COMPLETE"  # the stopped point, run again


def test_with_two_workers_the_winner_reproduces_its_trial_to_the_last_digit(ws):
    """Before: each worker trained on one torch thread and the winner on two (0.9653 became 0.9670)."""
    done = run_search(ws, "search.workers=2", "search.n_trials=3", *QUICK)
    assert done.returncode == 0, done.stderr[-3000:]
    url = f"sqlite:///{ws.project / 'optuna.db'}"
    trials = {t.number: t for t in study_of(url).trials}
    cores = len(os.sched_getaffinity(0))
    assert {t.user_attrs["torch_threads"] for t in trials.values()} == {
        max(1, cores // 2)
    }  # the cores shared
    client = ws.client
    winner = next(r for r in runs(client) if "search.winner_of_trial" in r.data.tags)
    trial = trials[int(winner.data.tags["search.winner_of_trial"])]

    def history(run_id: str) -> dict[str, list[float]]:  # val/acc alone: often 1.0 on the tiny data
        return {
            key: [m.value for m in client.get_metric_history(run_id, key)] for key in ("val/acc", "val/loss")
        }

    assert history(winner.info.run_id) == history(trial.user_attrs["mlflow_run_id"])
    assert max(history(winner.info.run_id)["val/acc"]) == trial.value


@pytest.mark.parametrize("space", ["default", "wide"])
def test_every_space_in_conf_runs_a_two_trial_study(ws, space):
    """Before: search=wide stopped at once (its null scheduler choice checked as 'None')."""
    epochs = "++search.space.trainer.max_epochs={low:1,high:2}"  # wide's 2-8 epochs, shortened
    done = run_search(ws, f"search={space}", "search.n_trials=2", "search.train_winner=false",
                      "search.pruner=none", "trainer.max_epochs=1", epochs)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(finished_points(f"sqlite:///{ws.project / 'optuna.db'}", space)) == 2


def test_a_rerun_whose_config_changed_what_trials_train_is_refused_naming_the_keys(ws):
    """Before: the same point scored 0.7897 at batch 256 and 0.6647 at batch 32 in one study, and the
    'winner' was trained under the new config."""
    assert run_search(ws, "search.n_trials=1", *QUICK).returncode == 0
    changed = run_search(ws, "search.n_trials=2", *QUICK, "data.batch_size=16")
    assert changed.returncode == 2, changed.stderr[-2000:]
    line = changed.stderr.strip().splitlines()[-1]
    assert "data.batch_size=32 in the study, 16 now" in line and "search.study=" in line, line
    convnet = ws.project / "conf" / "model" / "convnet.yaml"  # conf/ edited between two runs
    convnet.write_text(convnet.read_text().replace("init: glorot", "init: torch"))
    edited = run_search(ws, "search.n_trials=2", *QUICK)
    assert edited.returncode == 2, edited.stderr[-2000:]
    assert "model.init='glorot' in the study, 'torch' now" in edited.stderr.strip().splitlines()[-1]
    assert len(study_of(f"sqlite:///{ws.project / 'optuna.db'}").trials) == 1  # nothing more ran


def test_any_study_name_and_any_project_path_work_from_trials_to_winner(tmp_path, tiny_raw):
    """Before: a name with , or ' or a path with a space, é or ( ' # ~ = failed at the winner."""
    base = tmp_path / "digitpipe (1) é'#~=x"
    ws = Workspace(copy_project(base / "project"), write_mirror(base / "mirror", tiny_raw), tiny_raw)
    done = run_search(ws, "search.n_trials=2", "search.study=\"a,b 'c'\"", *QUICK)  # quoted for Hydra
    assert done.returncode == 0, done.stderr[-3000:]
    winner = next(r for r in runs(ws.client) if "search.winner_of_trial" in r.data.tags)
    assert winner.data.tags["search.study"] == "a,b 'c'" and "test/acc" in winner.data.metrics
    assert (ws.project / "searches" / "a,b 'c'" / "winner" / "models" / "best.ckpt").is_file()
    # dvc repro's first stage there: its searchpath override was a 39-line lexer traceback
    checked = run_cli(["python", "src/check_params.py"], cwd=ws.project, env=ws.env())
    assert checked.returncode == 0 and (ws.project / "reports" / "stage_config.yaml").is_file(), (
        checked.stderr
    )
    bad = run_search(ws, "search.study=../x", *QUICK)
    assert bad.returncode == 2 and "cannot name a study" in bad.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["search.n_trials=abc"], "error: search.n_trials must be a whole number of at least 1, not 'abc'"),
        (["search.heartbeat_s=0"], "error: search.heartbeat_s must be a whole number of at least 1, not 0"),
        (["search=broken"], "broken.yaml is not valid YAML at line 3, column 3"),
    ],
)
def test_a_bad_setting_or_space_file_is_one_line_before_any_study_or_run(ws, extra, expected):
    (ws.project / "conf" / "search" / "broken.yaml").write_text("name: broken\nspace: {a: [1, 2]\n  b: 3\n")
    result = run_search(ws, *extra)
    assert result.returncode == 2, result.stderr[-2000:]
    assert expected in result.stderr.strip().splitlines()[-1] and "Traceback" not in result.stderr
    assert not (ws.project / "optuna.db").exists() and runs(ws.client) == []


def test_ctrl_c_with_two_workers_stops_both_in_seconds_in_lines_without_tracebacks(ws):
    slow = ["+callbacks.slow._target_=tests.support.SlowSteps", "+callbacks.slow.seconds=0.3"]
    process = start(ws, "search.workers=2", "search.n_trials=4", *QUICK, *slow)
    url = f"sqlite:///{ws.project / 'optuna.db'}"
    wait_for(lambda: (ws.project / "optuna.db").exists() and _exists(url) and sum(
        t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs for t in study_of(url).trials) == 2,
        timeout=300, what="two trials in training", process=process)  # fmt: skip
    assert len(worker_processes(process)) == 2
    process.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends the command
    signalled = time.monotonic()
    out, err = process.communicate(timeout=90)
    assert process.returncode == 130, err[-3000:]
    assert time.monotonic() - signalled < 30
    assert "Traceback" not in out + err, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("stopped: interrupted by SIGINT")
    assert "resumes it" not in err  # a trial's checkpoints go with it: no resume is promised
    trials = study_of(url).trials
    assert not [t for t in trials if t.state.name == "RUNNING"]
    assert sum(t.state.name == "WAITING" for t in trials) == 2  # both points queued again
    assert not [r for r in runs(ws.client) if r.info.status == "RUNNING"]


def test_postgres_stopped_mid_search_is_one_line_naming_the_database_and_the_run_says_why(ws):
    from .postgres import start_postgres

    base = Path(tempfile.mkdtemp(prefix="digitpipe-pg-"))  # not under pytest's root-only tmp dirs
    server = start_postgres(base)  # its own server: this test stops it
    try:
        server.create_database("stopped")
        url = server.url("stopped")
        slow = ["+callbacks.slow._target_=tests.support.SlowSteps", "+callbacks.slow.seconds=0.3"]
        process = start(
            ws, f"search.storage={url}", "search.n_trials=3", *QUICK, "trainer.max_epochs=2", *slow
        )
        wait_for(lambda: _exists(url) and any(t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs
                                              for t in study_of(url, "tiny").trials),
                 timeout=300, what="a trial in training", process=process)  # fmt: skip
        server.stop()
        _, err = process.communicate(timeout=300)
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop()  # already stopped, unless the test failed before
        shutil.rmtree(base, ignore_errors=True)
    assert process.returncode == 2, err[-3000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: the search's storage postgresql+psycopg2://search:***@127.0.0.1:"), line
    assert "stopped answering" in line and "the same command continues it" in line
    assert len(err.strip().splitlines()) < 8 and "Traceback" not in err, err[-3000:]
    trial_runs = [r for r in runs(ws.client) if "search.trial" in r.data.tags]
    ended = [(r.info.status, r.data.tags.get("end_reason")) for r in trial_runs]
    assert trial_runs and not [r for r in trial_runs if r.info.status == "RUNNING"], (ended, err)
    assert all("invalid data in the commit" not in r.data.tags.get("end_reason", "") for r in trial_runs)


def test_a_full_disk_under_the_study_is_one_line_naming_the_storage(ws, tmp_path):
    """Before: 85-111 lines of traceback, and the trial's run said 'invalid data in the commit'."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        url = f"sqlite:///{disk / 'optuna.db'}"
        slow = ["+callbacks.slow._target_=tests.support.SlowSteps", "+callbacks.slow.seconds=0.3"]
        process = start(
            ws, f"search.storage={url}", "search.n_trials=3", *QUICK, "trainer.max_epochs=3", *slow
        )
        wait_for(lambda: (disk / "optuna.db").exists() and _exists(url) and any(
            t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs for t in study_of(url).trials),
            timeout=300, what="a trial in training", process=process)  # fmt: skip
        with contextlib.suppress(OSError), open(disk / "filler", "wb") as filler:
            while True:  # until the disk is full
                filler.write(b"\0" * 65536)
                filler.flush()
        _, err = process.communicate(timeout=300)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, check=False)
    assert process.returncode == 2, err[-3000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"error: the search's storage {url} stopped answering: "), line
    assert "full" in line and "Traceback" not in err, err[-3000:]
    trial_runs = [r for r in runs(ws.client) if "search.trial" in r.data.tags]
    assert trial_runs and not [r for r in trial_runs if r.info.status == "RUNNING"]
