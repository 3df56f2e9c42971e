"""Preprocess stage: raw IDX files -> uint8 train/val/test tensors and a stats file."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from digitpipe.cli import VERSION_BASE, preflight
from digitpipe.config.numbers import check_seed
from digitpipe.data.source import dataset_source
from digitpipe.errors import exit_on_user_error

CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base=VERSION_BASE)
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    check_seed(cfg)  # before any work, as train's validate does
    stats = dataset_source(cfg).preprocess()
    print(
        f"splits: {stats['sizes']}, train pixel mean {stats['pixel_mean']:.4f} std {stats['pixel_std']:.4f}"
    )


if __name__ == "__main__":
    preflight(CONFIG_DIR)
    main()
