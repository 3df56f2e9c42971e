"""Stage outputs: valid JSON always, the history of a resumed training, a set replaced as one."""

import json
import os

import pytest

from digitpipe import atomic
from digitpipe.training.history import EpochHistoryLogger
from digitpipe.training.publish import publish


def strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_are_written_as_null_so_the_json_stays_valid(tmp_path):
    atomic.write_json(tmp_path / "m.json", {"test/loss": float("nan"), "a": [float("inf"), 1.5], "n": 3})
    assert strict_json((tmp_path / "m.json").read_text()) == {"test/loss": None, "a": [None, 1.5], "n": 3}


def test_a_resumed_history_continues_from_the_checkpoints_rows_without_repeating_an_epoch(tmp_path):
    history = EpochHistoryLogger(tmp_path / "history.csv")
    history.log_metrics({"epoch": 0, "train/loss": 0.9, "val/acc": 0.5}, step=9)
    history.log_metrics({"epoch": 1, "train/loss": 0.7}, step=19)  # the epoch the kill interrupted
    resumed = EpochHistoryLogger(tmp_path / "history.csv")
    resumed.restore([{"epoch": 1, "train/loss": 0.9, "val/acc": 0.5}])  # what last.ckpt holds
    resumed.log_metrics({"epoch": 1, "train/loss": 0.6, "val/acc": 0.8}, step=19)
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert lines == ["epoch,train/loss,train/acc,val/loss,val/acc,train/lr", "1,0.9,,,0.5,", "2,0.6,,,0.8,"]


def outputs(tmp_path, tag: str) -> dict:
    return {tmp_path / "models" / "best.ckpt": f"{tag} weights".encode(),
            tmp_path / "reports" / "run.json": f'{{"run_id": "{tag}"}}'.encode()}  # fmt: skip


def test_publishing_replaces_every_output_and_retires_the_run_directory(tmp_path):
    first = tmp_path / "run1"
    first.mkdir()
    publish(outputs(tmp_path, "old"), tmp_path / "lock", lambda: None, retire=first)
    recorded = []
    run_dir = tmp_path / "run2"
    run_dir.mkdir()
    publish(outputs(tmp_path, "new"), tmp_path / "lock", lambda: recorded.append("FINISHED"), retire=run_dir)
    assert (tmp_path / "models" / "best.ckpt").read_bytes() == b"new weights"
    assert json.loads((tmp_path / "reports" / "run.json").read_text()) == {"run_id": "new"}
    assert recorded == ["FINISHED"] and not run_dir.exists()
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp") or ".finished" in p.name]
    assert leftovers == []


def test_when_the_run_cannot_be_recorded_no_output_changes(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    publish(outputs(tmp_path, "old"), tmp_path / "lock", lambda: None, retire=run_dir)
    run_dir.mkdir()

    def store_down() -> None:
        raise OSError("tracking server gone")

    with pytest.raises(OSError):
        publish(outputs(tmp_path, "new"), tmp_path / "lock", store_down, retire=run_dir)
    assert (tmp_path / "models" / "best.ckpt").read_bytes() == b"old weights"
    assert run_dir.is_dir()  # kept: the training can be resumed and recorded later
    assert not [p for p in tmp_path.rglob("*.tmp")]
    assert os.listdir(tmp_path / "models") == ["best.ckpt"]


def test_atomic_path_replaces_the_file_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic.atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_text("first")
        assert not target.exists()  # nothing at the real path until the block ends
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the writer failed")
    assert target.read_text() == "first" and sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_the_history_keeps_epoch_rows_only_merges_an_epochs_updates_and_adds_diagnostics(tmp_path):
    history = EpochHistoryLogger(tmp_path / "history.csv")
    history.log_metrics({"train/loss_step": 0.5, "epoch": 0}, step=4)  # a step metric: no row
    assert not (tmp_path / "history.csv").exists()
    history.log_metrics({"epoch": 0, "val/loss": 0.4, "val/acc": 0.8}, step=9)  # validation first
    history.log_metrics({"epoch": 0, "train/loss": 0.6, "train/acc": 0.7, "train/lr": 0.001}, step=9)
    history.log_metrics({"epoch": 1, "train/loss": 0.3, "diag/dead/conv1": 0.25}, step=19)
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert lines == [
        "epoch,train/loss,train/acc,val/loss,val/acc,train/lr,diag/dead/conv1",
        "1,0.6,0.7,0.4,0.8,0.001,",
        "2,0.3,,,,,0.25",
    ]


def test_a_checkpoint_that_cannot_be_written_stops_the_fit_in_one_line(tmp_path):
    """Lightning's own writer logs some write errors (a PermissionError) and trains on; this one
    raises. (A directory where the file goes: unwritable even for root.)"""
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from torch.utils.data import DataLoader, TensorDataset

    from digitpipe.errors import OutputError
    from digitpipe.training.checkpoints import VerifiedCheckpointIO

    from .test_lightning_compat import OneStep

    (tmp_path / "last.ckpt").mkdir()
    last = ModelCheckpoint(dirpath=tmp_path, filename="last", enable_version_counter=False)
    trainer = L.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        accelerator="cpu", plugins=[VerifiedCheckpointIO()], callbacks=[last])  # fmt: skip
    data = DataLoader(TensorDataset(torch.rand(4, 3), torch.rand(4, 1)), batch_size=4)
    with pytest.raises(OutputError) as stopped:
        trainer.fit(OneStep(), data)
    assert str(stopped.value) == (
        f"could not write {tmp_path / 'last.ckpt'} (Is a directory); check that {tmp_path} is writable"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp file left beside it
