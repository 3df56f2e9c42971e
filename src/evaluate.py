"""Evaluate stage: test metrics, per-class report, confusion matrix; logged into the training run."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from digitpipe.cli import VERSION_BASE, preflight
from digitpipe.errors import exit_on_user_error
from digitpipe.evaluation.evaluate import run_evaluate

CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base=VERSION_BASE)
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    result = run_evaluate(cfg)
    print(", ".join(f"{k} {v:.4f}" for k, v in result.scalars.items()))


if __name__ == "__main__":
    preflight(CONFIG_DIR)
    main()
