"""The served model's input rows: an image's bytes or MNIST pixels, one of them, and clear refusals."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException

from digitpipe.serving.images import decode_bytes, frame_digit, png_bytes
from digitpipe.serving.pyfunc_model import NETWORK, DigitModel


class MeanInk(torch.nn.Module):
    """A stand-in network: 'probabilities' from the pixels' sum, so the test sees what reached it."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        ink = pixels.flatten(1).sum(dim=1, keepdim=True)
        return torch.softmax(torch.nn.functional.pad(ink / 1e4, (0, 9)), dim=1)


@pytest.fixture
def model(tmp_path):
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(MeanInk(), (torch.rand(2, 28, 28),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "network.pt2"))
    digit_model = DigitModel()
    digit_model.load_context(SimpleNamespace(artifacts={NETWORK: str(tmp_path / "network.pt2")}))
    return digit_model


def test_an_images_bytes_reach_the_network_framed_as_predict_py_frames_them(model):
    canvas = np.full((90, 60), 255, dtype=np.uint8)
    canvas[10:80, 25:35] = 0  # a dark '1' on white, not MNIST's framing
    answers = model.predict(None, pd.DataFrame({"image": [png_bytes(canvas)]}))
    framed = frame_digit(decode_bytes(png_bytes(canvas)))
    expected = MeanInk()(framed[None])[0].double().tolist()
    assert answers["probabilities"][0] == pytest.approx(expected)
    assert list(answers.columns) == ["digit", "probability", "probabilities"]


def test_pixels_reach_the_network_as_given(model):
    pixels = np.zeros((28, 28), dtype=np.int64)
    pixels[5:20, 10:14] = 255
    answers = model.predict(None, pd.DataFrame({"pixels": [pixels.tolist()]}))
    expected = MeanInk()(torch.tensor(pixels, dtype=torch.float32)[None])[0].double().tolist()
    assert answers["probabilities"][0] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"image": b"not an image"}, "row 0's image is not a readable image (PNG or JPEG expected)"),
        ({"pixels": [[0] * 28] * 27}, "row 0: `pixels` is 27x28, not 28x28"),
        ({"pixels": [[0] * 28] * 27 + [[0] * 27]}, "row 0: `pixels` is not 28 rows of 28 numbers each"),
        ({"pixels": [0] * 28}, "row 0: `pixels` is not 28 rows of 28 numbers each"),
        ({"pixels": 7}, "row 0: `pixels` is not 28 rows of 28 numbers each"),
        (
            {"pixels": [[0] * 28] * 27 + [[0] * 27 + ["x"]]},
            "row 0: `pixels` holds something that is not a number",
        ),
        ({"pixels": [[0] * 28] * 27 + [[0] * 27 + [256]]}, "row 0: `pixels` has values outside 0..255"),
        ({"pixels": [[-1] + [0] * 27] * 28}, "row 0: `pixels` has values outside 0..255"),
        (
            {"image": None, "pixels": None},
            "row 0: neither `image` (PNG/JPEG bytes) nor `pixels` (28x28) given",
        ),
    ],
)
def test_a_bad_row_is_refused_as_the_clients_mistake_naming_the_row(model, row, message):
    with pytest.raises(MlflowException) as caught:
        model.predict(None, pd.DataFrame([row]))
    assert caught.value.message == message and caught.value.get_http_status_code() == 400


def test_a_row_with_both_an_image_and_pixels_is_refused(model):
    both = pd.DataFrame([{"image": png_bytes(np.zeros((28, 28))), "pixels": [[0] * 28] * 28}])
    with pytest.raises(MlflowException, match="both `image` and `pixels` given; send one"):
        model.predict(None, both)


def test_no_rows_get_no_answers_with_the_answer_columns(model):
    answers = model.predict(None, pd.DataFrame({"pixels": []}))
    assert len(answers) == 0 and list(answers.columns) == ["digit", "probability", "probabilities"]


@pytest.mark.parametrize("columns", [{"foo": [1]}, {"Image": [b"x"]}, {}])
def test_a_request_with_no_known_column_is_refused_naming_the_columns(model, columns):
    with pytest.raises(MlflowException) as caught:
        model.predict(None, pd.DataFrame(columns))
    assert caught.value.get_http_status_code() == 400
    assert caught.value.message.startswith("the request has neither an `image` column (a PNG/JPEG file's "
                                           "bytes, base64 in JSON) nor a `pixels` column (28x28")  # fmt: skip


def test_a_request_over_the_row_limit_is_refused_before_any_row_is_read(model, monkeypatch):
    from digitpipe.serving import pyfunc_model

    monkeypatch.setattr(pyfunc_model, "MAX_ROWS", 3)
    with pytest.raises(MlflowException) as caught:
        model.predict(None, pd.DataFrame({"image": [b"not read"] * 4}))
    assert caught.value.message == (
        "the request has 4 rows, over the limit of 3; send them in smaller requests"
    )
