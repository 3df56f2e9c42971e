"""A training stopped by a signal through the real CLI: SIGKILL, then the same command resumes it
exactly; SIGTERM and Ctrl-C exit non-zero and leave the previous outputs whole. Each test has its
own project copy (workspace.py): none depends on what another left behind."""

from __future__ import annotations

import pytest
import torch

from .workspace import EPOCHS, histories, last_line, new_workspace

pytestmark = pytest.mark.slow


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
    lines = resumed.stdout.splitlines()
    (said,) = [i for i, line in enumerate(lines) if line.startswith(f"resuming run {run.info.run_id} from ")]
    assert lines[said].endswith(  # resume=auto is the default: the way to start afresh, on the first screen
        "(resume=auto found it interrupted, with this config and code; resume=false starts a new run)"
    )
    assert said < 20, lines[:said]
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
