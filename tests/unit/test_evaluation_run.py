"""Evaluate logs only into the run the train stage recorded for the model it evaluates."""

import re

import pytest

from digitpipe.errors import DataError
from digitpipe.train_outputs import RETRAIN, run_record, training_run_id


def published(tmp_path, model: bytes, recorded_for: bytes, run_id: str = "a" * 32) -> tuple:
    """The train stage's two outputs: `model` as best.ckpt, and a record of `recorded_for`'s run."""
    best, run_info = tmp_path / "best.ckpt", tmp_path / "mlflow_run.json"
    best.write_bytes(model)
    run_info.write_text(run_record(run_id, "1", recorded_for))
    return run_info, best


def test_the_run_is_the_one_the_record_names_for_this_model(tmp_path):
    assert training_run_id(*published(tmp_path, b"weights", b"weights")) == "a" * 32


def test_a_model_the_record_was_not_written_for_is_refused_in_one_line(tmp_path):
    run_info, best = published(tmp_path, b"another run's weights", b"weights")
    with pytest.raises(DataError) as refused:
        training_run_id(run_info, best)
    assert str(refused.value) == (
        f"{best} is not the model {run_info} records for run {'a' * 32} (another sha256): the train "
        f"stage's outputs do not belong together; {RETRAIN}"
    )


@pytest.mark.parametrize(
    "record", ["{not json", '{"run_id": "' + "a" * 32 + '", "experiment_id": "1"}', "[]"],
    ids=["damaged", "an-older-versions-record", "not-a-mapping"],
)  # fmt: skip
def test_a_damaged_or_older_record_is_refused_naming_the_fix(tmp_path, record):
    run_info, best = published(tmp_path, b"weights", b"weights")
    run_info.write_text(record)
    refused = rf"is not a run record of the train stage \(.*\); {re.escape(RETRAIN)}"
    with pytest.raises(DataError, match=refused):
        training_run_id(run_info, best)


def test_a_missing_record_or_model_says_which(tmp_path):
    run_info, best = published(tmp_path, b"weights", b"weights")
    best.unlink()
    with pytest.raises(DataError, match=f"{best} is missing"):
        training_run_id(run_info, best)
    run_info.unlink()
    with pytest.raises(DataError, match=f"{run_info} is missing: it names the MLflow run"):
        training_run_id(run_info, best)
