"""docs/team.md's tracking server refusing what it must, in one line before any work: a wrong
password, an unknown user, no login, a reader; a foreign Host or Origin. And its database stopped
under a running training: a bounded wait, nothing lost, resumed."""

from __future__ import annotations

import base64
import shutil
import time
import urllib.error
import urllib.request

import pytest

from ..conftest import Tiny, run_cli
from .postgres import as_server_user, bindir
from .team import EXPERIMENT, PASSWORDS

pytestmark = pytest.mark.slow


def train_command(*extra: str) -> list[str]:
    return ["python", "src/train.py", "trainer.max_epochs=1", "callbacks.progress_bar.refresh_rate=0", *extra]


@pytest.mark.parametrize(
    ("user", "password", "line"),
    [
        ("alice", "not-her-password", "refused the login of 'alice' (an unknown user or a wrong password); "
         "check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"),
        ("mallory", "whatever", "refused the login of 'mallory' (an unknown user or a wrong password); "
         "check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"),
        (None, None, "asks for a login; set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"),
    ],
)  # fmt: skip
def test_a_refused_login_is_one_line_before_any_training(team, ws, user, password, line):
    admin = team.client("admin")
    experiment = admin.get_experiment_by_name(EXPERIMENT).experiment_id
    before = len(admin.search_runs([experiment]))
    result = run_cli(train_command(*Tiny(ws.raw).overrides()), cwd=ws.project,
                     env={**ws.env(), **team.env(user, password)})  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == f"error: MLflow server {team.url} {line}"
    assert not (ws.project / "data").exists() and not (ws.project / "checkpoints").exists()
    assert len(team.client("admin").search_runs([experiment])) == before


def test_a_reader_is_told_the_permission_it_has_and_the_one_logging_needs(team, ws):
    admin = team.client("admin")
    experiment = admin.get_experiment_by_name(EXPERIMENT)
    before = len(admin.search_runs([experiment.experiment_id]))
    result = run_cli(train_command(*Tiny(ws.raw).overrides()), cwd=ws.project,
                     env={**ws.env(), **team.env("reader")})  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: user 'reader' has READ permission on experiment '{EXPERIMENT}' at {team.url}; logging runs "
        "needs EDIT: ask the server's admin to grant it (docs/team.md)"
    )
    assert len(team.client("admin").search_runs([experiment.experiment_id])) == before
    assert not (ws.project / "data").exists()


def status_of(url: str, headers: dict, data: bytes | None = None) -> int:
    request = urllib.request.Request(url, data, headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_a_foreign_host_or_origin_is_refused_under_the_recipes_options(team):
    login = {"Authorization": "Basic " + base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()}
    assert status_of(f"{team.url}/", login) == 200
    rebound = {**login, "Host": "attacker.example:5000"}  # DNS rebinding: the page's name, this address
    assert status_of(f"{team.url}/", rebound) in (400, 403)
    search = f"{team.url}/api/2.0/mlflow/experiments/search"
    body, json_type = b'{"max_results": 5}', {"Content-Type": "application/json"}
    assert status_of(search, {**login, **json_type, "Origin": team.url}, body) == 200
    assert status_of(search, {**login, **json_type, "Origin": "http://attacker.example"}, body) == 403
    assert team.host.startswith("127.0.0.1:")  # bound to the loopback interface only


def test_the_database_stopped_under_the_server_costs_a_bounded_wait_and_the_run_resumes(team, ws, tmp_path):
    database = team.database
    stop_script = tmp_path / "stop-database.sh"
    ctl = [str(bindir() / "pg_ctl"), "-D", str(database.data), "-m", "fast", "-w", "stop"]
    stop_script.write_text(" ".join(as_server_user(ctl)) + "\n")
    marker = tmp_path / "stopped"
    command = ws.command("mlflow.http.timeout_s=3", "mlflow.http.max_retries=2",
                         "+callbacks.db._target_=tests.support.RunOnce", "+callbacks.db.epoch=1",
                         "+callbacks.db.batch=2", f"+callbacks.db.script={stop_script}",
                         f"+callbacks.db.marker={marker}")  # fmt: skip
    env = {**ws.env(), **team.env("alice")}
    try:
        failed = run_cli(command, cwd=ws.project, env=env)
        seconds = time.time() - marker.stat().st_mtime
    finally:
        if marker.exists():
            database.start()
    assert failed.returncode == 2 and "Traceback" not in failed.stderr, failed.stderr[-3000:]
    (run_dir,) = [p for p in (ws.project / "checkpoints").iterdir() if p.is_dir()]
    line = failed.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: MLflow store {team.url} failed while ")
    assert line.endswith("the same command resumes it")
    assert seconds < 60
    assert (run_dir / "last.ckpt").is_file() and not (ws.project / "models").exists()
    unsent = run_dir / "unsent_metrics.csv"
    pending = unsent.read_text().splitlines() if unsent.exists() else []

    resumed = run_cli(command, cwd=ws.project, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    if len(pending) > 1:
        assert f"({len(pending) - 1} unsent metrics sent)" in resumed.stdout
    admin = team.client("admin")
    run = admin.get_run(run_dir.name)
    assert run.info.status == "FINISHED"
    for key in ("train/loss", "val/acc"):
        assert len(admin.get_metric_history(run.info.run_id, key)) == 3  # every epoch, once
    shutil.rmtree(run_dir, ignore_errors=True)
