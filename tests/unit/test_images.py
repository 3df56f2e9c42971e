import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

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


def stroke_mask(size=(60, 90)) -> np.ndarray:
    mask = np.zeros(size[::-1], dtype=bool)
    mask[10:80, 25:35] = True
    return mask


def saved_as(mode: str, path):
    """The same dark '1' in `mode`, as drawing apps and scanners save one; the file's path."""
    mask = stroke_mask()
    if mode == "RGBA transparent":  # an HTML canvas: black strokes, the rest transparent black
        alpha = mask.astype(np.uint8) * 255
        image = Image.fromarray(np.dstack([np.zeros_like(alpha)] * 3 + [alpha]))
    elif mode == "RGBA opaque":
        rgb = np.where(mask, 0, 255).astype(np.uint8)
        image = Image.fromarray(np.dstack([rgb, rgb, rgb, np.full_like(rgb, 255)]))
    elif mode == "LA transparent":
        image = Image.fromarray(np.dstack([np.zeros_like(mask, np.uint8), mask.astype(np.uint8) * 255]), "LA")
    elif mode == "P with transparency":  # index 0 transparent white, index 1 black
        image = Image.fromarray(mask.astype(np.uint8), "P")
        image.putpalette([255, 255, 255, 0, 0, 0])
        image.info["transparency"] = 0
    elif mode == "16-bit":
        image = Image.fromarray(np.where(mask, 0, 65535).astype(np.uint16))
    else:  # CMYK: black ink (K) on white paper
        k = np.where(mask, 255, 0).astype(np.uint8)
        image = Image.fromarray(np.dstack([np.zeros_like(k)] * 3 + [k]), "CMYK")
    suffix = ".jpg" if mode == "CMYK" else ".png"
    image.save(path.with_suffix(suffix), **({"transparency": 0} if mode == "P with transparency" else {}))
    return path.with_suffix(suffix)


MODES = ["RGBA transparent", "RGBA opaque", "LA transparent", "P with transparency", "16-bit", "CMYK"]


@pytest.mark.parametrize("mode", MODES)
def test_a_dark_digit_in_any_mode_frames_as_the_same_stroke_on_opaque_white(tmp_path, mode):
    reference = frame_digit(Image.fromarray(np.where(stroke_mask(), 0, 255).astype(np.uint8)))
    path = saved_as(mode, tmp_path / "digit")
    framed = frame_digit(load_image(path))  # predict.py's path
    tolerance = 8 if mode == "CMYK" else 0.5  # (JPEG)
    assert torch.allclose(framed, reference, atol=tolerance), (framed - reference).abs().max()
    assert torch.equal(frame_digit(decode_bytes(path.read_bytes())), framed)  # the served model's path


@pytest.mark.parametrize(
    ("image", "shade"),
    [(Image.new("L", (40, 40), 255), "255 to 255"), (Image.new("RGB", (40, 40), (0, 0, 0)), "0 to 0"),
     (Image.new("RGBA", (40, 40), (0, 0, 0, 0)), "0 to 0"),  # a canvas nobody drew on
     (Image.new("L", (40, 40), 200), "200 to 200")],
)  # fmt: skip
def test_an_image_with_no_ink_is_refused_in_one_line_instead_of_predicted(image, shade):
    with pytest.raises(DataError) as refused:
        frame_digit(image, "blank.png")
    assert str(refused.value) == (f"blank.png has no ink: every pixel is about the same shade ({shade} of "
                                  "255); send a digit drawn dark on light or light on dark")  # fmt: skip


def test_an_image_over_the_pixel_limit_is_refused_before_it_is_decoded(tmp_path, monkeypatch):
    path = black_png(tmp_path / "poster.png", 5000, 4000)  # 20 million pixels: under PIL's guard, over ours
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self))
    with pytest.raises(DataError) as refused:
        load_image(path)
    assert str(refused.value).startswith(f"{path} is too large: 5000x4000 pixels, over the limit of 16,777,")
    assert decoded == []  # refused from its header


def test_an_image_file_over_the_byte_limit_is_refused_unread(tmp_path, monkeypatch):
    from digitpipe.serving import images

    monkeypatch.setattr(images, "MAX_BYTES", 1000)
    noisy = np.random.default_rng(0).integers(0, 255, (60, 60), dtype=np.uint8)
    Image.fromarray(noisy).save(tmp_path / "big.png")
    with pytest.raises(DataError, match=r"big.png is too large: [\d,]+ bytes, over the limit of 1,000;"):
        load_image(tmp_path / "big.png")
    with pytest.raises(DataError, match=r"row 2's image is too large: [\d,]+ bytes, over the limit of 1,0"):
        decode_bytes((tmp_path / "big.png").read_bytes(), "row 2's image")
