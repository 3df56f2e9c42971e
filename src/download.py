"""Download stage: fetch and verify the raw MNIST files (`MNIST_MIRROR=DIR_OR_URL` puts a mirror first)."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from digitpipe.cli import VERSION_BASE, preflight
from digitpipe.data.download import planned_download
from digitpipe.errors import exit_on_user_error

CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base=VERSION_BASE)
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    planned_download(cfg).run()


if __name__ == "__main__":
    preflight(CONFIG_DIR)
    main()
