"""Search hyperparameters: `python src/search.py`, or `python src/search.py search=wide search.n_trials=40`.
Any other override applies to every trial (trainer.max_epochs=3). Rerun, it continues the study."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from digitpipe.cli import VERSION_BASE, preflight
from digitpipe.errors import exit_on_user_error

CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"


def fixed_overrides() -> list[str]:
    """The command line's overrides of what trials train (not the search's own, nor Hydra's)."""
    from hydra.core.hydra_config import HydraConfig

    return [o for o in HydraConfig.get().overrides.task if not o.lstrip("+~").startswith(("search", "hydra"))]


@hydra.main(config_path=str(CONFIG_DIR), config_name="search_config", version_base=VERSION_BASE)
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    from hydra import compose

    from digitpipe_search.run import search

    search(cfg, fixed_overrides(), CONFIG_DIR, lambda overrides: compose("config", overrides=overrides))


if __name__ == "__main__":
    from digitpipe_search.space import check_yaml

    exit_on_user_error(check_yaml)(CONFIG_DIR, "search_config", sys.argv[1:])
    preflight(CONFIG_DIR, "search_config")
    main()
