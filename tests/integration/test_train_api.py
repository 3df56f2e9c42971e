"""The train stage's function in-process on tiny data: reproducible, and its outputs are complete."""

from __future__ import annotations

import json

import pytest
import torch

from digitpipe.data.download import MIRROR_ENV
from digitpipe.training.train import train

from ..conftest import compose_config, tiny_overrides

pytestmark = pytest.mark.slow


@pytest.fixture
def tiny_cfg(tmp_path, tiny_mirror, tiny_raw, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths resolve here (no dvc.yaml above tmp_path)
    monkeypatch.setenv(MIRROR_ENV, str(tiny_mirror))
    overrides = tiny_overrides(tiny_raw, tmp_path) + [
        f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        "callbacks.progress_bar.refresh_rate=0",
    ]
    return lambda *extra: compose_config([*overrides, *extra])


def test_the_same_seed_trains_the_same_model_twice(tiny_cfg, tmp_path):
    first = train(tiny_cfg())
    weights = torch.load(tmp_path / "models" / "last.ckpt", weights_only=True)["state_dict"]
    second = train(tiny_cfg())
    again = torch.load(tmp_path / "models" / "last.ckpt", weights_only=True)["state_dict"]
    assert first.run_id != second.run_id
    assert {k: v for k, v in first.metrics.items() if k != "fit_seconds"} == {
        k: v for k, v in second.metrics.items() if k != "fit_seconds"
    }
    assert all(torch.equal(weights[k], again[k]) for k in weights)


def test_another_seed_trains_a_different_model(tiny_cfg):
    assert train(tiny_cfg("seed=1")).metrics["train/loss"] != train(tiny_cfg("seed=2")).metrics["train/loss"]


def test_train_prepares_missing_data_then_writes_every_output(tiny_cfg, tmp_path):
    result = train(tiny_cfg("model.activation=leaky_relu", "scheduler=cosine"))
    assert (tmp_path / "data" / "processed" / "mnist.pt").is_file()  # prepared by the stages' code
    metrics = json.loads((tmp_path / "reports" / "train_metrics.json").read_text())
    assert set(metrics) == {"train/loss", "train/acc", "val/loss", "val/acc", "best/val_acc", "fit_seconds"}
    assert metrics["val/acc"] == pytest.approx(result.metrics["val/acc"], abs=1e-6)
    run_info = json.loads((tmp_path / "reports" / "mlflow_run.json").read_text())
    assert run_info["run_id"] == result.run_id
    checkpoint = torch.load(tmp_path / "models" / "best.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["activation"] == "leaky_relu"
