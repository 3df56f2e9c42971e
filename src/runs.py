"""Tidy the records: close the MLflow runs of processes that died, list interrupted trainings.

Every stage that touches the MLflow store does the first by itself; `python src/runs.py` does it now.
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from digitpipe.cli import VERSION_BASE, preflight
from digitpipe.errors import exit_on_user_error
from digitpipe.paths import resolve
from digitpipe.tracking.run import close_dead_runs
from digitpipe.tracking.store import open_store
from digitpipe.training.run_dir import interrupted_runs, read_run_state

CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base=VERSION_BASE)
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    store = open_store(cfg.mlflow)
    closed = close_dead_runs(store.client)
    print(f"{len(closed)} run(s) left RUNNING by a process that is gone: marked KILLED {' '.join(closed)}")
    for run_dir in interrupted_runs(resolve(cfg.paths.checkpoints)):
        epochs = len(read_run_state(run_dir.last).get("history", []))
        print(f"interrupted after {epochs} epoch(s): run {run_dir.run_id} in {run_dir.path}/; "
              f"`python src/train.py resume={run_dir.run_id}` with its settings continues it")  # fmt: skip


if __name__ == "__main__":
    preflight(CONFIG_DIR)
    main()
