"""Run the real `python src/train.py` with every output in a given directory; read back its figures.

    python benchmarks/train_cli.py trainer.max_epochs=1     # one training: its figures, as JSON

recipes.py, profile_fit.py, ddp_scaling.py, versions.py and vs_keras.py train through train_cli().
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parents[1]


def train_cli(
    overrides: list[str], out: Path, experiment: str = "benchmarks", root: Path = ROOT
) -> dict[str, float]:
    """Fit (and test the best checkpoint) into `out` with the checkout at `root` (its src/ first on
    the path): wall and fit seconds, epochs, steps, accuracies."""
    paths = {k: out / f"{k}.out" for k in ("run_info", "train_metrics", "history")}
    args = [sys.executable, "src/train.py", *overrides, f"paths.model_dir={out / 'models'}",
            f"paths.checkpoints={out / 'checkpoints'}", *(f"paths.{k}={v}" for k, v in paths.items()),
            f"mlflow.tracking_uri=sqlite:///{out / 'mlflow.db'}", f"mlflow.experiment_name={experiment}",
            "mlflow.log_checkpoint=false", "mlflow.log_model=false", "test_after_fit=true",
            "callbacks.progress_bar.refresh_rate=0"]  # fmt: skip
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    done = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"python src/train.py {' '.join(overrides)} failed:\n{done.stderr[-3000:]}")
    run_id = json.loads(paths["run_info"].read_text())["run_id"]
    run = MlflowClient(f"sqlite:///{out / 'mlflow.db'}").get_run(run_id)
    metrics, params = run.data.metrics, run.data.params
    epochs = len(paths["history"].read_text().splitlines()) - 1
    # the training file's images (train + val of the prepared split) less this run's validation split
    sizes = json.loads((root / params["paths.stats"]).read_text())["sizes"]
    images = sizes["train"] + sizes["val"] - int(params["data.val_size"])
    steps = epochs * -(-images // int(params["data.batch_size"]))
    fit_s = json.loads(paths["train_metrics"].read_text())["fit_seconds"]
    return {
        "wall_s": wall, "fit_s": fit_s, "epochs": epochs, "steps": steps, "val_acc": metrics["val/acc"],
        "test_acc": metrics["test/acc"], "precision": run.data.tags["device.precision"],
    }  # fmt: skip


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(train_cli(sys.argv[1:], Path(tmp))))
