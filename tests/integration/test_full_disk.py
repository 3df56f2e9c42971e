"""The artifact disk full (mlruns/ on a real 1 MB tmpfs, the database still writable): one line
with "No space left on device", exit 2, models/ and reports/ untouched, and the run marked FAILED
with the reason, as every other failure; the same command resumes it once there is room."""

from __future__ import annotations

import subprocess

import pytest

from .workspace import last_line, new_workspace

pytestmark = pytest.mark.slow


@pytest.fixture
def full_mlruns(tmp_path, tiny):
    ws = new_workspace(tmp_path, tiny.raw)
    mlruns = ws.project / "mlruns"
    mlruns.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mlruns)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield ws, mlruns
    finally:
        subprocess.run(["umount", "-l", str(mlruns)], capture_output=True, check=False)


def test_a_full_artifact_disk_is_one_line_and_the_run_is_marked_failed_with_the_reason(full_mlruns):
    ws, mlruns = full_mlruns
    before = ws.md5s()
    result = ws.train("mlflow.log_model=true")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    line = last_line(result)
    assert line.startswith("error: MLflow store ") and "No space left on device" in line, line
    assert ws.md5s() == before  # models/ and reports/ as they were
    (run,) = ws.runs()
    assert run.info.status == "FAILED", run.info.status  # was left RUNNING
    assert "No space left on device" in run.data.tags["end_reason"]
    subprocess.run(["umount", "-l", str(mlruns)], check=True)  # room again
    again = ws.train("mlflow.log_model=true")  # the same command
    assert again.returncode == 0, again.stderr[-3000:]
    (run,) = ws.runs()
    assert run.info.status == "FINISHED" and run.data.tags.get("resumed") == "1"
