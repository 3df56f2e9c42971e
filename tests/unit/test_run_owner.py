"""Telling a dead run from a live one, and closing only the dead ones."""

import socket
import subprocess
import sys

import psutil
import pytest
from mlflow import MlflowClient

from digitpipe.tracking.owner import Owner
from digitpipe.tracking.run import END_REASON, close_dead_runs


@pytest.fixture
def dead_owner() -> Owner:
    """A process of this host that has ended (its PID recorded while it lived)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    owner = Owner(socket.gethostname(), process.pid, psutil.Process(process.pid).create_time())
    process.kill()
    process.wait()
    return owner


def test_this_process_is_alive_and_an_ended_one_is_not(dead_owner):
    assert Owner.current().is_alive() is True
    assert dead_owner.is_alive() is False


def test_a_reused_pid_is_not_mistaken_for_the_runs_process():
    me = Owner.current()
    assert Owner(me.host, me.pid, me.started - 3600).is_alive() is False


def test_a_process_on_another_host_cannot_be_judged():
    assert Owner("another-host.example", 1, 0.0).is_alive() is None


def test_owner_tags_round_trip_and_other_runs_have_none():
    me = Owner.current()
    assert Owner.from_tags(me.tags()) == Owner(me.host, me.pid, round(me.started, 2))
    assert Owner.from_tags({"mlflow.runName": "made by something else"}) is None


def test_only_running_runs_of_dead_processes_on_this_host_are_closed(tmp_path, sqlite_store, dead_owner):
    client = MlflowClient(sqlite_store)
    experiment = client.create_experiment("e", (tmp_path / "mlruns").as_uri())
    other_host = Owner("another-host.example", dead_owner.pid, dead_owner.started)

    def run(tags: dict) -> str:
        return client.create_run(experiment, tags=tags).info.run_id

    dead, alive = run(dead_owner.tags()), run(Owner.current().tags())
    remote, foreign = run(other_host.tags()), run({})
    finished = run(dead_owner.tags())
    client.set_terminated(finished, "FINISHED")

    assert close_dead_runs(client) == [dead]
    status = {r: client.get_run(r).info.status for r in (dead, alive, remote, foreign, finished)}
    assert status == {dead: "KILLED", alive: "RUNNING", remote: "RUNNING", foreign: "RUNNING",
                      finished: "FINISHED"}  # fmt: skip
    reason = client.get_run(dead).data.tags[END_REASON]
    assert reason.startswith(f"process {dead_owner.pid} on {dead_owner.host} ended without closing the run")
    assert close_dead_runs(client) == []  # nothing left to close
