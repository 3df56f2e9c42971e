"""What a search costs beyond its trials' fits, on tiny trials (limited batches of the real data).

    python benchmarks/search.py --trials 8
    python benchmarks/search.py --trials 2 --fresh 1 data.val_size=1000     # any overrides for all

Runs the real `python src/search.py`, each search in a fresh store and study, and prints:
- trials per hour with 1 and with 2 workers (same seed, no pruning);
- the per-trial overhead (trial wall minus its fit) of in-process trials against one fresh
  `python src/train.py` per trial (what `dvc exp run --queue` pays), same settings;
- trials per hour with the median pruner against none (same seed).
Needs data/processed/mnist.pt (dvc repro, or python src/preprocess.py). Figures: docs/search.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "trainer.max_epochs=3",
    "+trainer.limit_train_batches=30",
    "+trainer.limit_val_batches=5",
    "callbacks.progress_bar.refresh_rate=0",
    "mlflow.log_checkpoint=false",
]


def search(out: Path, trials: int, *extra: str) -> dict:
    storage = f"sqlite:///{out / 'optuna.db'}"
    args = [
        sys.executable,
        "src/search.py",
        *TINY,
        f"search.n_trials={trials}",
        f"search.storage={storage}",
        f"mlflow.tracking_uri=sqlite:///{out / 'mlflow.db'}",
        "search.train_winner=false",
        f"search.outputs.work_dir={out / 'searches'}",
        f"search.outputs.summary={out / 'search.json'}",
        f"search.outputs.figures={out / 'figures'}",
        *extra,
    ]
    started = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"search failed:\n{done.stderr[-3000:]}")
    study = optuna.load_study(study_name="default", storage=storage)
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in study.trials]
    overheads = [
        d - t.user_attrs["fit_seconds"]
        for d, t in zip(durations, study.trials, strict=True)
        if "fit_seconds" in t.user_attrs
    ]
    summary = json.loads((out / "search.json").read_text())
    return {
        "wall_s": wall,
        "study_wall_s": summary["wall_s"],
        "trials": len(study.trials),
        "per_hour": 3600 * len(study.trials) / wall,
        "overheads": overheads,
        "counts": summary["trials"],
    }


def fresh_process(out: Path, overrides: list[str]) -> float:
    """One `python src/train.py` with the same tiny settings: its wall minus its fit."""
    metrics = out / "train_metrics.json"
    args = [
        sys.executable,
        "src/train.py",
        *TINY,
        *overrides,
        f"mlflow.tracking_uri=sqlite:///{out / 'mlflow.db'}",
        "mlflow.log_model=false",
        "mlflow.registered_model_name=null",
        "resume=false",
        f"paths.model_dir={out / 'models'}",
        f"paths.checkpoints={out / 'ckpt'}",
        f"paths.run_info={out / 'run.json'}",
        f"paths.train_metrics={metrics}",
        f"paths.history={out / 'history.csv'}",
    ]
    started = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"train failed:\n{done.stderr[-3000:]}")
    return wall - json.loads(metrics.read_text())["fit_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--fresh", type=int, default=3, help="fresh python src/train.py runs to measure")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every search and training")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for name, extra in (
            ("1 worker", ["search.pruner=none"]),
            ("2 workers", ["search.pruner=none", "search.workers=2"]),
            ("1 worker, median pruner", ["search.pruner=median", "search.startup_trials=2"]),
        ):
            out = Path(tmp) / name.replace(" ", "_").replace(",", "")
            out.mkdir()
            runs[name] = search(out, args.trials, *args.overrides, *extra)
            print(
                f"{name}: {runs[name]['trials']} trials in {runs[name]['wall_s']:.1f} s wall "
                f"({runs[name]['per_hour']:.0f} trials/h; {runs[name]['counts']})",
                flush=True,
            )
        fresh = []
        out = Path(tmp) / "fresh"
        out.mkdir()
        for _ in range(args.fresh):
            fresh.append(fresh_process(out, [*args.overrides, "model.activation=relu", "optimizer=adam"]))
        inproc = runs["1 worker"]["overheads"]
        print(
            f"per-trial overhead (wall minus fit), in-process: median {statistics.median(inproc):.2f} s "
            f"(first {inproc[0]:.2f} s, later {statistics.median(inproc[1:]):.2f} s) of {len(inproc)} trials"
        )
        print(
            "per-trial overhead, a fresh python src/train.py per trial: "
            f"median {statistics.median(fresh):.2f} s of {len(fresh)}"
        )
        one, two = runs["1 worker"]["per_hour"], runs["2 workers"]["per_hour"]
        pruned = runs["1 worker, median pruner"]["per_hour"]
        print(
            f"2 workers / 1 worker: {two / one:.2f}x trials per hour; "
            f"median pruner / none: {pruned / one:.2f}x"
        )


if __name__ == "__main__":
    main()
