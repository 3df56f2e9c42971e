"""What logging to docs/team.md's server costs against the sqlite default, on the same tiny training.

    python benchmarks/team_server.py --rounds 3

Starts the recipe for real: PostgreSQL, moto's S3 server and `mlflow server` with basic auth, as
the tests do (tests/integration/team.py). Then, alternating the two stores in each round, prints:
- one epoch's metrics (the rows a tiny run logged for its first epoch) sent in one log_batch;
- one run's artifacts (what a tiny run uploads: config, summary, figures, checkpoints) uploaded;
- one small request (the median of 20), the least any call to the store pays;
- the whole `python src/train.py` on limited batches of the real data, its wall time and its fit.
Needs data/processed/mnist.pt (dvc repro, or python src/preprocess.py). Figures: docs/team.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.postgres import start_postgres  # noqa: E402
from tests.integration.team import EXPERIMENT, start_team_server  # noqa: E402

TINY = ["trainer.max_epochs=2", "+trainer.limit_train_batches=30", "+trainer.limit_val_batches=5",
        "callbacks.progress_bar.refresh_rate=0", "test_after_fit=false"]  # fmt: skip


def train(out: Path, env: dict, overrides: list[str]) -> tuple[float, float, str]:
    """One tiny training in a fresh copy of the outputs: (wall s, fit s, run id)."""
    reports = out / "reports"
    args = [sys.executable, "src/train.py", *TINY, *overrides, f"paths.model_dir={out / 'models'}",
            f"paths.checkpoints={out / 'checkpoints'}", f"paths.run_info={reports / 'mlflow_run.json'}",
            f"paths.train_metrics={reports / 'train_metrics.json'}",
            f"paths.history={reports / 'history.csv'}"]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"training failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((reports / "train_metrics.json").read_text())
    run = json.loads((reports / "mlflow_run.json").read_text())["run_id"]
    return wall, metrics["fit_seconds"], run


def client_for(env: dict):
    from mlflow import MlflowClient

    os.environ.update(env)
    return MlflowClient(env["MLFLOW_TRACKING_URI"])


def epoch_rows(client, run_id: str) -> list:
    """The metric rows the run logged during its first epoch (per-step losses and epoch values)."""
    from mlflow.entities import Metric

    run = client.get_run(run_id)
    rows = []
    for key in run.data.metrics:
        history = client.get_metric_history(run_id, key)
        first = min(m.step for m in history)
        rows += [
            Metric(m.key, m.value, int(time.time() * 1000), m.step) for m in history if m.step <= first + 30
        ]
    return rows


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every training")
    args = parser.parse_args()
    rounds = args.rounds
    base = Path(tempfile.mkdtemp(prefix="team-bench-"))
    base.chmod(0o755)  # PostgreSQL runs as its own user
    database = start_postgres(base / "pg")
    team = start_team_server(base / "team", database)
    stores = {"sqlite": {"MLFLOW_TRACKING_URI": f"sqlite:///{base / 'mlflow.db'}"}, "team": team.env("alice")}
    kinds = ("request", "epoch", "artifacts", "fit", "wall")
    figures: dict[str, dict[str, list[float]]] = {s: {k: [] for k in kinds} for s in stores}
    try:
        for round_ in range(rounds):
            for name, env in stores.items():
                out = base / f"{name}-{round_}"
                wall, fit, run_id = train(out, env, args.overrides)
                client = client_for(env)
                rows = epoch_rows(client, run_id)
                experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
                target = client.create_run(experiment).info.run_id
                artifacts = out / "artifacts"
                client.download_artifacts(run_id, "", str(artifacts))
                figures[name]["wall"].append(wall)
                figures[name]["fit"].append(fit)
                figures[name]["epoch"].append(
                    timed(lambda c=client, t=target, r=rows: c.log_batch(t, metrics=r))
                )
                figures[name]["artifacts"].append(
                    timed(lambda c=client, t=target, a=artifacts: c.log_artifacts(t, str(a)))
                )
                client.set_terminated(target)
                figures[name]["request"].append(  # one small read: what every call pays at least
                    statistics.median(
                        timed(lambda c=client: c.get_experiment_by_name(EXPERIMENT)) for _ in range(20)
                    )  # fmt: skip
                )
                size = sum(p.stat().st_size for p in artifacts.rglob("*") if p.is_file()) / 1e6
                print(f"round {round_ + 1} {name}: wall {wall:.1f} s, fit {fit:.1f} s, "
                      f"{len(rows)} metric rows, {size:.1f} MB of artifacts", flush=True)  # fmt: skip
    finally:
        team.stop()
        database.stop()
        shutil.rmtree(base, ignore_errors=True)
    median = {s: {k: statistics.median(v) for k, v in f.items()} for s, f in figures.items()}
    print(f"\nmedians of {rounds} alternated rounds          sqlite     team   team - sqlite")
    for key, label in (("request", "one request (get_experiment_by_name)"),
                       ("epoch", "one epoch's metrics (log_batch)"), ("artifacts", "one run's artifacts"),
                       ("fit", "the fit"), ("wall", "python src/train.py, wall")):  # fmt: skip
        a, b = median["sqlite"][key], median["team"][key]
        print(f"{label:<38} {a:7.2f} s {b:7.2f} s {b - a:+8.2f} s")


if __name__ == "__main__":
    main()
