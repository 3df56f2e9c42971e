"""SLURM for real: a one-node cluster (slurm.py) runs docs/slurm/'s scripts as they are: a DDP
training as one job of two tasks, a rank killed under it, and a search as a job array on one
PostgreSQL study, with a task cancelled mid-trial."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from ..conftest import ROOT, Tiny, user_env
from .slurm import installed
from .test_search import SPACE, runs, study_of, wait_for
from .workspace import Workspace

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not installed(), reason="needs Debian's slurm-wlm and munge (.ci/run installs them)"),
]

DDP_SCRIPT, SEARCH_SCRIPT = ROOT / "docs" / "slurm" / "ddp.sbatch", ROOT / "docs" / "slurm" / "search.sbatch"


def ddp_overrides(ws: Workspace, *extra: str) -> list[str]:
    return [*Tiny(ws.raw).overrides(), "trainer.max_epochs=2", "trainer.precision=32-true",
            "callbacks.progress_bar.refresh_rate=0", "mlflow.log_model=false", *extra]  # fmt: skip


def sbatch(slurm, ws: Workspace, *args: str) -> str:
    return slurm.sbatch(*args, cwd=ws.project, env=user_env(ws.env()))


def runs_in(ws: Workspace, experiment: str) -> list:
    found = ws.client.get_experiment_by_name(experiment)
    return ws.client.search_runs([found.experiment_id]) if found else []


def job_output(ws: Workspace, job: str) -> str:
    return "\n".join(p.read_text() for p in sorted(ws.project.glob(f"slurm-{job}*.out")))


def test_an_sbatch_ddp_job_is_one_run_with_the_outputs_of_the_same_training_without_slurm(slurm, ws):
    job = sbatch(slurm, ws, str(DDP_SCRIPT), *ddp_overrides(ws, "mlflow.experiment_name=slurm"))
    states = slurm.wait(job, timeout=600)
    output = job_output(ws, job)
    assert states == {job: "COMPLETED 0:0"}, output[-4000:]
    assert "MEMBER: 1/2" in output and "MEMBER: 2/2" in output  # two ranks, started by SLURM
    (run,) = runs_in(ws, "slurm")  # one run, not one per rank
    assert run.info.status == "FINISHED" and run.data.params["trainer.devices"] == "2"
    metrics = json.loads((ws.project / "reports" / "train_metrics.json").read_text())
    assert sorted(p.name for p in (ws.project / "models").iterdir()) == ["best.ckpt", "last.ckpt"]
    # the same training, launched by Lightning instead of SLURM: the same numbers
    plain = ws.train(
        "trainer=ddp_cpu", *ddp_overrides(ws, "mlflow.experiment_name=plain")[len(Tiny(ws.raw).overrides()) :]
    )
    assert plain.returncode == 0, plain.stderr[-3000:]
    again = json.loads((ws.project / "reports" / "train_metrics.json").read_text())
    assert {k: v for k, v in again.items() if k != "fit_seconds"} == {
        k: v for k, v in metrics.items() if k != "fit_seconds"
    }


def test_a_rank_killed_under_slurm_ends_the_job_in_seconds_and_the_run_resumes(slurm, ws, tmp_path):
    marker = tmp_path / "killed"
    kill = ["+callbacks.kill._target_=tests.support.SignalOnce", "+callbacks.kill.signal=SIGKILL",
            "+callbacks.kill.epoch=1", "+callbacks.kill.batch=3", "+callbacks.kill.rank=1",
            f"+callbacks.kill.marker={marker}",
            "+callbacks.slow._target_=tests.support.SlowSteps"]  # fmt: skip
    overrides = ddp_overrides(ws, "trainer.max_epochs=3", "mlflow.experiment_name=killed", *kill)
    job = sbatch(slurm, ws, str(DDP_SCRIPT), *overrides)
    states = slurm.wait(job, timeout=600)
    seconds = time.time() - marker.stat().st_mtime
    output = job_output(ws, job)
    assert states[job].startswith("FAILED"), output[-4000:]
    assert seconds < 30, output[-4000:]  # SLURM ended the other rank: no collective waited for it
    (run,) = runs_in(ws, "killed")
    assert run.info.status in ("FAILED", "KILLED"), output[-4000:]  # never left RUNNING
    assert "Traceback" not in output, output[-4000:]
    # the same job told the run resumes it from its last checkpoint and finishes it (under SLURM and
    # torchrun no rank can tell the others its choice: resume=auto starts a new run)
    again = sbatch(slurm, ws, str(DDP_SCRIPT), *overrides, f"resume={run.info.run_id}")
    assert slurm.wait(again, timeout=600) == {again: "COMPLETED 0:0"}, job_output(ws, again)[-4000:]
    assert f"resuming run {run.info.run_id}" in job_output(ws, again)
    assert ws.client.get_run(run.info.run_id).info.status == "FINISHED"


def search_overrides(ws: Workspace, url: str) -> list[str]:
    (ws.project / "conf" / "search" / "tiny.yaml").write_text(SPACE)
    return ["search=tiny", f"search.storage={url}", *Tiny(ws.raw).overrides(), "trainer.max_epochs=2",
            "callbacks.progress_bar.refresh_rate=0", "search.startup_trials=1", "search.pruner=none",
            "search.heartbeat_s=1", "search.grace_s=3", "search.n_trials=5",
            "+search.space.optimizer.lr={low:1.0e-3,high:1.0e-2,log:true}",
            "+callbacks.slow._target_=tests.support.SlowSteps", "+callbacks.slow.seconds=0.15"]  # fmt: skip


def array_task_of(pid: int) -> str:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return next(v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"SLURM_ARRAY_TASK_ID="))


def test_a_search_as_a_job_array_reaches_exactly_its_total_with_no_point_twice_and_a_cancelled_task_retried(
    slurm, ws, postgres
):
    postgres.create_database("slurm_array")
    url = postgres.url("slurm_array")
    overrides = search_overrides(ws, url)
    job = sbatch(slurm, ws, "--array=0-1", str(SEARCH_SCRIPT), *overrides)

    def a_trial_in_training():
        try:
            trials = study_of(url).trials
        except Exception:  # not made yet
            return None
        return [t for t in trials if t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs]

    running = wait_for(a_trial_in_training, timeout=300, what="a trial in training")[0]
    pid = int(ws.client.get_run(running.user_attrs["mlflow_run_id"]).data.tags["process.pid"])
    cancelled = slurm.run("scancel", f"{job}_{array_task_of(pid)}")
    assert cancelled.returncode == 0, cancelled.stderr
    states = slurm.wait(job, timeout=900)
    output = job_output(ws, job)
    assert len(states) == 2 and any(s.startswith("CANCELLED") for s in states.values()), (
        states,
        output[-3000:],
    )

    final = sbatch(slurm, ws, f"--dependency=afterany:{job}", "--output=slurm-final.out", "--wrap",
                   " ".join(["python", "src/search.py", *(f"'{o}'" for o in overrides)]))  # fmt: skip
    assert slurm.wait(final, timeout=600) == {final: "COMPLETED 0:0"}, (
        ws.project / "slurm-final.out"
    ).read_text()

    study = study_of(url)
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 5  # exactly the total
    points = [json.dumps(t.params, sort_keys=True) for t in finished]
    assert len(set(points)) == len(points), points  # no point trained twice
    stopped = next(t for t in study.trials if t.number == running.number)
    assert stopped.state.name == "FAIL"
    retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == stopped.number)
    assert retry.params == stopped.params and retry.state.name == "COMPLETE"
    assert not [r for r in runs(ws.client) if r.info.status == "RUNNING"]
    summary = json.loads((ws.project / "reports" / "search.json").read_text())
    assert summary["trials"]["complete"] == 5
    assert re.search(r"winner: run \w+", (ws.project / "slurm-final.out").read_text())
