"""Download stage: fetch and verify the raw MNIST files (`MNIST_MIRROR=DIR_OR_URL` puts a mirror first)."""

import hydra
from omegaconf import DictConfig

from digitpipe.data.download import run_download
from digitpipe.errors import exit_on_user_error


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    run_download(cfg)


if __name__ == "__main__":
    main()
