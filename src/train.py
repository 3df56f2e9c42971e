"""Train the convnet: `python src/train.py model.activation=leaky_relu`, or sweep with -m."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from digitpipe.cli import VERSION_BASE, preflight
from digitpipe.errors import exit_on_user_error
from digitpipe.metric_names import VAL_ACC
from digitpipe.training.train import train

CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base=VERSION_BASE)
@exit_on_user_error
def main(cfg: DictConfig) -> float:
    result = train(cfg)
    if result.run_id:  # rank 0 (the other DDP ranks have no run)
        print(f"run {result.run_id}: val/acc {result.metrics['val/acc']:.4f}, best {result.best_checkpoint}")
    return result.metrics[VAL_ACC]


if __name__ == "__main__":
    preflight(CONFIG_DIR)
    main()
