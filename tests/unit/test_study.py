"""The activation study's pure parts: which cells, their overrides, and the table made from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from digitpipe_study.cells import Cell, cell_overrides, cells
from digitpipe_study.table import CellResult, group, markdown_table

STUDY = {
    "activations": ["relu", "sigmoid"],
    "seeds": [1, 2],
    "epochs": 2,
    "precision": "32-true",
    "optimizer": "rmsprop",
    "lr": 0.001,
    "dying": {"activations": ["relu"], "lr": 0.01},
    "probe_size": 100,
    "quick": False,
    "quick_steps": 7,
}
MAIN = {
    "data": {"split_seed": 42, "val_size": 5000},
    "paths": {
        "dataset": "data/processed/mnist.pt",
        "stats": "data/processed/stats.json",
        "raw_dir": "data/raw",
    },
}


def test_the_study_is_every_activation_and_seed_then_the_dying_arm():
    names = ["base-relu-s1", "base-relu-s2", "base-sigmoid-s1", "base-sigmoid-s2", "dying-relu-s1"]
    assert [c.name for c in cells(STUDY)] == [*names, "dying-relu-s2"]


def test_a_cell_trains_on_the_main_pipelines_split_into_its_own_directory():
    overrides = cell_overrides(STUDY, Cell("base", "sigmoid", 2), MAIN, Path("../.."))
    assert {"diagnostics=on", "model.activation=sigmoid", "seed=2", "optimizer.lr=0.001",
            "data.split_seed=42", "trainer.max_epochs=2", "trainer.precision=32-true",
            "paths.dataset=../../data/processed/mnist.pt",
            "paths.model_dir=cells/base-sigmoid-s2/models", "mlflow.registered_model_name=null",
            "mlflow.run_name=base-sigmoid-s2"} <= set(overrides)  # fmt: skip
    assert not any("limit_train_batches" in o for o in overrides)
    dying = cell_overrides({**STUDY, "quick": True}, Cell("dying", "relu", 1), MAIN, Path("../.."))
    assert {"optimizer.lr=0.01", "trainer.max_epochs=1", "+trainer.limit_train_batches=7"} <= set(dying)


def result(arm: str, activation: str, seed: int, acc: float, dead_end: float) -> CellResult:
    diagnostics = [
        {"step": str(s), "epoch": "1", "metric": "grad_norm", "layer": "conv1", "value": str(s / 100)}
        for s in (1, 50, 100, 150)  # step 150 is past the first 100: not in the early mean
    ]
    for epoch, dead in ((0, 0.0), (1, dead_end / 2), (2, dead_end)):
        diagnostics += [{"step": str(epoch * 10), "epoch": str(epoch), "metric": "dead", "layer": layer,
                         "value": str(dead)} for layer in ("conv1", "conv2", "conv3", "dense1")]  # fmt: skip
    diagnostics += [{"step": "10", "epoch": "1", "metric": "step_ms", "layer": "", "value": str(10 + seed)}]
    history = [{"epoch": "1", "train/acc": str(acc - 0.1)}, {"epoch": "2", "train/acc": str(acc)}]
    return CellResult(arm, activation, seed, 0.001, f"run{seed}", {"test/acc": acc}, history, diagnostics)


def test_the_table_has_a_row_per_arm_and_activation_with_means_over_seeds():
    rows = group([result("base", "relu", 1, 0.98, 0.2), result("base", "relu", 2, 0.96, 0.4),
                  result("base", "sigmoid", 1, 0.90, 0.0), result("dying", "relu", 1, 0.5, 0.9)])  # fmt: skip
    summaries = [row.summary() for row in rows]
    assert [(s["arm"], s["activation"], s["seeds"]) for s in summaries] == [
        ("base", "relu", 2), ("base", "sigmoid", 1), ("dying", "relu", 1)
    ]  # fmt: skip
    relu = summaries[0]
    assert relu["test_acc_mean"] == pytest.approx(0.97)
    assert relu["test_acc_std"] == pytest.approx(0.0141421, abs=1e-6)
    assert relu["train_acc_epoch1"] == pytest.approx(0.87)
    assert relu["grad_norm_conv1_first100"] == pytest.approx((0.01 + 0.5 + 1.0) / 3)
    assert relu["dead_conv2"] == pytest.approx(0.3)  # after the last epoch, mean of seeds
    assert relu["ms_per_step"] == pytest.approx(11.5)  # 11 and 12 ms
    table = markdown_table(summaries).splitlines()
    assert len(table) == 2 + 3
    assert "0.9700 ± 0.0141" in table[2] and "30.0%" in table[2]
    assert table[3].split(" | ")[-2] == "–"  # sigmoid saturation was not in these records: not measured
