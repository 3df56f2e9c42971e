"""Evaluate logs only into the run that trained the checkpoint it evaluates."""

import json

import pytest
import torch

from digitpipe.errors import DataError
from digitpipe.evaluation.evaluate import training_run_id
from digitpipe.training.checkpoints import RUN_KEY

RETRAIN = "rerun the train stage (dvc repro train, or python src/train.py)"


def files(tmp_path, trained_in: str | None, recorded: str) -> tuple:
    checkpoint, run_info = tmp_path / "best.ckpt", tmp_path / "mlflow_run.json"
    torch.save({"state_dict": {}, **({RUN_KEY: {"run_id": trained_in}} if trained_in else {})}, checkpoint)
    run_info.write_text(json.dumps({"run_id": recorded, "experiment_id": "1"}))
    return run_info, checkpoint


def test_the_run_is_the_one_both_the_record_and_the_checkpoint_name(tmp_path):
    assert training_run_id(*files(tmp_path, "a" * 32, "a" * 32)) == "a" * 32


def test_a_checkpoint_of_another_run_is_refused_in_one_line(tmp_path):
    run_info, checkpoint = files(tmp_path, "a" * 32, "b" * 32)
    with pytest.raises(DataError) as refused:
        training_run_id(run_info, checkpoint)
    assert str(refused.value) == (
        f"{checkpoint} was trained in run {'a' * 32}, but {run_info} names run {'b' * 32}: the train "
        f"stage's outputs do not belong together; {RETRAIN}"
    )


def test_a_checkpoint_that_names_no_run_and_a_damaged_record_are_refused(tmp_path):
    run_info, checkpoint = files(tmp_path, None, "b" * 32)
    with pytest.raises(DataError, match="was trained in an unrecorded run"):
        training_run_id(run_info, checkpoint)
    run_info.write_text("{not json")
    with pytest.raises(DataError, match="is not a run record of the train stage"):
        training_run_id(run_info, checkpoint)
