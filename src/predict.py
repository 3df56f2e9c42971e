"""Predict digits: `python src/predict.py IMAGE...` prints the digit and its probability per image.

Images are framed as MNIST digits by the same code the served MLflow model runs
(digitpipe.serving.images), from this project's checkpoint (default) or from a logged model
(`--model models:/mnist-convnet@champion`), which then gets the image files' bytes as
`mlflow models serve` does.
"""

import argparse
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from digitpipe.cli import VERSION_BASE
from digitpipe.errors import exit_on_user_error
from digitpipe.paths import resolve
from digitpipe.serving.images import frame_digit, load_image
from digitpipe.serving.network import pixel_classifier_from_checkpoint, top_digits
from digitpipe.tracking import access
from digitpipe.tracking.store import (
    check_reachable,
    check_sqlite_file,
    logged_in,
    store_failures,
    tracking_uri,
)
from digitpipe.train_outputs import BEST

CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"


def from_checkpoint(checkpoint: Path, images: list[Path]) -> list[tuple[int, float]]:
    model = pixel_classifier_from_checkpoint(checkpoint)
    pixels = torch.stack([frame_digit(load_image(path), str(path)) for path in images])
    with torch.no_grad():
        return top_digits(model(pixels))


def from_mlflow_model(uri: str, images: list[Path]) -> list[tuple[int, float]]:
    import mlflow.pyfunc
    import pandas as pd

    for path in images:
        load_image(path)  # a missing or unreadable file fails here, in one line naming it
    store = tracking_uri(None)  # MLflow's: $MLFLOW_TRACKING_URI, else the project's sqlite store
    access.check_uri_has_no_password(store)
    check_reachable(store)
    check_sqlite_file(store)
    mlflow.set_tracking_uri(store)
    with store_failures(store, f"loading {uri}"):
        model = logged_in(store, lambda: mlflow.pyfunc.load_model(uri))
    answers = model.predict(pd.DataFrame({"image": [path.read_bytes() for path in images]}))
    return list(zip(answers["digit"].tolist(), answers["probability"].tolist(), strict=True))


@exit_on_user_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split(":")[0])
    parser.add_argument("images", nargs="+", type=Path, help="PNG or JPEG files, any size")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", type=Path, help="default: best.ckpt in paths.model_dir")
    source.add_argument("--model", help="an MLflow model URI instead, e.g. models:/mnist-convnet@champion")
    args = parser.parse_args()
    if args.model:
        digits = from_mlflow_model(args.model, args.images)
    else:
        with initialize_config_dir(str(CONFIG_DIR), version_base=VERSION_BASE):
            cfg = compose("config")
        digits = from_checkpoint(args.checkpoint or resolve(cfg.paths.model_dir) / BEST, args.images)
    for path, (digit, probability) in zip(args.images, digits, strict=True):
        print(f"{path}: {digit} (p={probability:.3f})")


if __name__ == "__main__":
    main()
