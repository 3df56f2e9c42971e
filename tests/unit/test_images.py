import numpy as np
import pytest
import torch
from PIL import Image

from digitpipe.errors import DataError
from digitpipe.serving.images import decode_bytes, frame_digit, load_image
from digitpipe.serving.network import top_digits

from ..artifacts import black_png


def digit_like(size=(60, 90), light_background=True) -> Image.Image:
    """A thick vertical stroke, like a '1', on a light or dark background."""
    canvas = np.full(size[::-1], 255 if light_background else 0, dtype=np.uint8)
    canvas[10:80, 25:35] = 0 if light_background else 255
    return Image.fromarray(canvas).convert("RGB")


@pytest.mark.parametrize("light", [True, False])
def test_any_image_becomes_a_white_on_black_28x28_digit_in_a_20px_box(light):
    pixels = frame_digit(digit_like(light_background=light))
    assert pixels.shape == (28, 28) and pixels.dtype == torch.float32
    ink = (pixels > 50).nonzero()
    assert pixels.max() > 200 and pixels[0, 0] == 0  # white digit, black border
    assert (ink[:, 0].max() - ink[:, 0].min() + 1) <= 20 and (ink[:, 0].max() - ink[:, 0].min() + 1) >= 18
    centre = ink.float().mean(dim=0)
    assert torch.allclose(centre, torch.tensor([13.5, 13.5]), atol=1.5)  # centred by mass


def test_a_file_that_is_not_an_image_is_refused_in_one_line(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not really a png")
    with pytest.raises(DataError, match=r"notes.png is not a readable image \(PNG or JPEG expected\)"):
        load_image(path)
    with pytest.raises(DataError, match="no such file"):
        load_image(tmp_path / "missing.png")


def test_top_digits_are_the_most_probable_digit_and_its_probability():
    probabilities = torch.tensor([[0.1, 0.9] + [0.0] * 8, [0.7, 0.2] + [0.01] * 8])
    assert top_digits(probabilities) == [(1, pytest.approx(0.9)), (0, pytest.approx(0.7))]


def test_an_images_bytes_decode_as_its_file_does(tmp_path):
    path = tmp_path / "one.png"
    digit_like().save(path)
    assert torch.equal(frame_digit(decode_bytes(path.read_bytes())), frame_digit(load_image(path)))
    with pytest.raises(DataError, match=r"^row 3's image is not a readable image"):
        decode_bytes(b"GIF89a-truncated", "row 3's image")


@pytest.mark.parametrize(("width", "pixels"), [(40, "1,600"), (50, "2,500")])  # PIL: warning, error
def test_an_image_over_pils_pixel_limit_is_refused_with_its_size_and_the_limit(
    tmp_path, monkeypatch, recwarn, width, pixels
):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    path = black_png(tmp_path / "huge.png", width, width)
    with pytest.raises(DataError) as caught:
        load_image(path)
    message = str(caught.value)
    assert message.startswith(f"{path} is too large: {pixels} pixels, over the limit of 1,000 pixels")
    assert "scale it down" in message and "\n" not in message
    assert not recwarn.list  # refused, not warned about on stderr as well


def test_an_image_within_pils_pixel_limit_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert load_image(black_png(tmp_path / "small.png", 30, 30)).size == (30, 30)
