"""The whole pipeline on the real MNIST files from the local mirror: one epoch reaches >= 0.97."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ..conftest import ROOT, copy_project, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

MIRROR = Path(os.environ.get("MNIST_MIRROR") or ROOT.parent / "shared" / "datasets" / "mnist")


@pytest.mark.skipif(not MIRROR.is_dir(), reason=f"no local MNIST mirror at {MIRROR}; set MNIST_MIRROR")
def test_one_epoch_of_dvc_repro_on_real_mnist_reaches_097(tmp_path):
    project = copy_project(tmp_path / "project")
    trainer = project / "conf" / "trainer" / "cpu.yaml"
    trainer.write_text(trainer.read_text().replace("max_epochs: 5", "max_epochs: 1"))
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("max_epochs: 5", "max_epochs: 1"))
    result = run_cli(["dvc", "repro"], cwd=project, env={"MNIST_MIRROR": str(MIRROR)})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    stats = json.loads((project / "data/processed/stats.json").read_text())
    assert stats["sizes"] == {"train": 55_000, "val": 5_000, "test": 10_000}
    assert stats["pixel_mean"] == pytest.approx(0.1307, abs=1e-3)
    metrics = json.loads((project / "reports/metrics.json").read_text())
    print(f"real MNIST, 1 epoch: {metrics}")
    assert metrics["test/acc"] >= 0.97
    assert metrics["test/errors"] == round((1 - metrics["test/acc"]) * 10_000)
