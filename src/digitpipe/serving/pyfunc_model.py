"""The MLflow model every training logs and registers (`models:/mnist-convnet@champion`), which
`mlflow models serve` runs and `python src/predict.py` shares.

Input, a table with one of two columns per row:
- `image`: a PNG or JPEG file's bytes, any size (base64 in a JSON request); framed as MNIST digits
  were made by serving.images.frame_digit, the conversion predict.py uses;
- `pixels`: 28x28 integers 0..255, white digit on black, as MNIST's files hold them.
Output, per row: `digit`, its `probability`, and the ten `probabilities`.

The network travels as a torch.export program (the artifact "network"), this package as the model's
code (code_paths), so loading the model needs neither this project nor its data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, DataType, Schema
from mlflow.types.schema import Array

from digitpipe.errors import DataError
from digitpipe.serving.images import SIZE, decode_bytes, frame_digit
from digitpipe.serving.network import top_digits

NETWORK = "network"  # the artifact holding the PixelClassifier, exported (.pt2)
IMAGE, PIXELS = "image", "pixels"
MAX_ROWS = 1000  # per request (docs/operations.md); each image is decoded and framed in turn

SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec(DataType.binary, IMAGE, required=False),
                   ColSpec(Array(Array(DataType.long)), PIXELS, required=False)]),
    outputs=Schema([ColSpec(DataType.long, "digit"), ColSpec(DataType.double, "probability"),
                    ColSpec(Array(DataType.double), "probabilities")]),
)  # fmt: skip


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def row_pixels(row: pd.Series, number: int) -> torch.Tensor:
    """One input row as (28, 28) pixels: its image framed as an MNIST digit, or its pixels as given."""
    image, pixels = row.get(IMAGE), row.get(PIXELS)
    if not is_missing(image) and not is_missing(pixels):
        raise DataError(f"row {number}: both `{IMAGE}` and `{PIXELS}` given; send one")
    if not is_missing(image):
        name = f"row {number}'s image"
        return frame_digit(decode_bytes(bytes(image), name), name)
    if is_missing(pixels):
        raise DataError(f"row {number}: neither `{IMAGE}` (PNG/JPEG bytes) nor `{PIXELS}` (28x28) given")
    return torch.from_numpy(pixel_array(pixels, number))


def pixel_array(pixels: Any, number: int) -> np.ndarray:
    """`pixels` as a (28, 28) float array of 0..255, or DataError naming what is wrong with it."""
    try:
        lines = [np.asarray(line, dtype=object) for line in pixels]
    except TypeError:  # a single value, not rows
        lines = []
    widths = {line.shape[0] if line.ndim == 1 else None for line in lines}
    if len(widths) != 1 or None in widths:
        raise DataError(f"row {number}: `{PIXELS}` is not {SIZE} rows of {SIZE} numbers each")
    shape = (len(lines), widths.pop())
    if shape != (SIZE, SIZE):
        raise DataError(f"row {number}: `{PIXELS}` is {shape[0]}x{shape[1]}, not {SIZE}x{SIZE}")
    try:
        array = np.stack(lines).astype(np.float32)
    except (TypeError, ValueError):
        raise DataError(f"row {number}: `{PIXELS}` holds something that is not a number") from None
    if not np.all((array >= 0) & (array <= 255)):  # NaN fails both
        raise DataError(f"row {number}: `{PIXELS}` has values outside 0..255")
    return array


def check_request(model_input: pd.DataFrame) -> None:
    """A request names at least one known column and holds at most MAX_ROWS rows. (MLflow's schema
    enforcement drops columns it does not know, `Image` or `foo`, and both columns are optional, so
    without this a typo would be answered 200 with no predictions.)"""
    if not {IMAGE, PIXELS} & set(model_input.columns):
        raise DataError(
            f"the request has neither an `{IMAGE}` column (a PNG/JPEG file's bytes, base64 in JSON) nor a "
            f"`{PIXELS}` column (28x28 integers 0..255); columns of other names are not read"
        )
    if len(model_input) > MAX_ROWS:
        raise DataError(f"the request has {len(model_input):,} rows, over the limit of {MAX_ROWS:,}; "
                        "send them in smaller requests")  # fmt: skip


def answers(probabilities: torch.Tensor) -> pd.DataFrame:
    digits = top_digits(probabilities)
    return pd.DataFrame({
        "digit": [d for d, _ in digits],
        "probability": [p for _, p in digits],
        "probabilities": probabilities.double().tolist(),
    })  # fmt: skip


class DigitModel(PythonModel):
    def load_context(self, context) -> None:
        self.network = torch.export.load(context.artifacts[NETWORK]).module()

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        try:
            check_request(model_input)
            pixels = [row_pixels(row, i) for i, (_, row) in enumerate(model_input.iterrows())]
        except DataError as err:  # the client's mistake: a 400 with the message, not a 500
            raise MlflowException(str(err), INVALID_PARAMETER_VALUE) from err
        with torch.no_grad():  # no rows, no answers
            return answers(self.network(torch.stack(pixels)) if pixels else torch.empty(0, 1))
