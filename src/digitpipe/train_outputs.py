"""What the train stage publishes for the stages after it, and how they read it back.

In paths.model_dir, BEST and LAST (the best checkpoint by val/acc, and the last); in paths.run_info,
the run record: the MLflow run the model was trained in and the sha256 of BEST, so a stage that
reads the model knows which run it belongs to. Nothing else of the train stage is read by others.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from digitpipe import atomic
from digitpipe.errors import DataError

BEST, LAST = "best.ckpt", "last.ckpt"
RETRAIN = "rerun the train stage (dvc repro train, or python src/train.py)"


def run_record(run_id: str, experiment_id: str, best: bytes) -> str:
    """The run record's text for a run and the bytes of its best checkpoint."""
    digest = hashlib.sha256(best).hexdigest()
    return atomic.json_text({"run_id": run_id, "experiment_id": experiment_id, "best_sha256": digest})


def training_run_id(run_info: Path, best: Path) -> str:
    """The run the record names, checked against the checkpoint beside it (the train stage replaces
    them together; a copy of another run's model, or a record from an older version, is refused)."""
    if not run_info.is_file():
        raise DataError(f"{run_info} is missing: it names the MLflow run to log into; {RETRAIN}")
    try:
        record = json.loads(run_info.read_text())
        run_id, digest = record["run_id"], record["best_sha256"]
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(f"{run_info} is not a run record of the train stage ({err}); {RETRAIN}") from err
    if not best.is_file():
        raise DataError(f"{best} is missing; {RETRAIN}")
    if atomic.file_digest(best, "sha256") != digest:
        raise DataError(
            f"{best} is not the model {run_info} records for run {run_id} (another sha256): the train "
            f"stage's outputs do not belong together; {RETRAIN}"
        )
    return run_id
