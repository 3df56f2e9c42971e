"""Predict digits: `python src/predict.py IMAGE...` prints the digit and its probability per image."""

import argparse
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from digitpipe.errors import exit_on_user_error
from digitpipe.models.predictor import predictor_from_checkpoint
from digitpipe.paths import resolve
from digitpipe.prediction import load_image, predict, to_mnist

CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"


@exit_on_user_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split(":")[0])
    parser.add_argument("images", nargs="+", type=Path, help="PNG or JPEG files, any size")
    parser.add_argument("--checkpoint", type=Path, help="default: best.ckpt in paths.model_dir")
    args = parser.parse_args()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config")
    model = predictor_from_checkpoint(args.checkpoint or resolve(cfg.paths.model_dir) / "best.ckpt")
    pixels = torch.stack([to_mnist(load_image(path)) for path in args.images])
    for path, (digit, probability) in zip(args.images, predict(model, pixels), strict=True):
        print(f"{path}: {digit} (p={probability:.3f})")


if __name__ == "__main__":
    main()
