"""Images (files or bytes) to MNIST-style digits: the one conversion that `python src/predict.py`
and the served MLflow model both use."""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from digitpipe.errors import DataError

SIZE, BOX = 28, 20  # MNIST itself: the digit fits a 20x20 box, centred by mass in 28x28
# The largest image taken, before it is decoded (docs/operations.md): a phone's photo fits, and one
# decoded image then costs at most ~0.3 GB; a digit needs a few hundred pixels a side.
MAX_PIXELS, MAX_BYTES = 4096 * 4096, 20 * 2**20
WORKING_SIDE = 1024  # a larger image is box-filtered to at most this many pixels a side, then framed
MIN_CONTRAST = 16  # grey levels between the darkest and lightest pixel below which there is no ink


def decode(source: str | Path | BinaryIO, name: str) -> Image.Image:
    """The decoded image (`name` says what it was in messages); refused before it is decoded above
    MAX_BYTES or MAX_PIXELS (PIL's own decompression-bomb guard is 89 million pixels)."""
    try:
        size = (Path(source).stat().st_size if isinstance(source, (str, Path))
                else source.getbuffer().nbytes if isinstance(source, io.BytesIO) else 0)  # fmt: skip
        if size > MAX_BYTES:
            raise DataError(f"{name} is too large: {size:,} bytes, over the limit of {MAX_BYTES:,}; "
                            "scale it down, a digit needs a few hundred pixels a side")  # fmt: skip
        with warnings.catch_warnings():
            # PIL only warns between 1x and 2x its limit; no digit needs that many pixels, and decoding them
            # (then ~4 bytes a pixel in frame_digit) costs gigabytes, so the warning is refused like the error
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:  # reads the header only
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise DataError(
                        f"{name} is too large: {width}x{height} pixels, over the limit of {MAX_PIXELS:,} "
                        "(4096x4096); scale it down, a digit needs a few hundred pixels a side"
                    )
                image.load()
                return image
    except FileNotFoundError as err:
        raise DataError(f"{name}: no such file") from err
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        pixels = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{int(pixels[1]):,} pixels, " if pixels else ""
        raise DataError(
            f"{name} is too large: {size}over the limit of {Image.MAX_IMAGE_PIXELS:,} pixels (PIL's guard "
            "against decompression bombs); scale it down, a digit needs a few hundred pixels a side"
        ) from err
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{name} is not a readable image (PNG or JPEG expected)") from err


def load_image(path: Path) -> Image.Image:
    """An image file, decoded."""
    return decode(path, str(path))


def decode_bytes(data: bytes, name: str = "the image") -> Image.Image:
    """An image file's bytes (PNG, JPEG, ...), decoded."""
    return decode(io.BytesIO(data), name)


def png_bytes(pixels: np.ndarray) -> bytes:
    """Pixels 0..255 (an (H, W) array) as a PNG file's bytes, e.g. an MNIST digit sent as an image."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels).clip(0, 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def gray_levels(image: Image.Image) -> np.ndarray:
    """Any image's grey levels 0..255 as float32: transparency composited over the background it
    implies (a dark stroke on a transparent canvas, as drawing apps export, is a dark stroke on
    white), 16-bit and float images scaled, palette and CMYK images converted."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("P", "PA") or "transparency" in image.info:
        image = image.convert("RGBA")  # a palette's or a colour key's transparency as alpha
    elif image.mode in ("1", "CMYK") or image.mode.startswith("I;16"):
        image = image.convert({"1": "L", "CMYK": "RGB"}.get(image.mode, "I"))
    if max(image.size) > WORKING_SIDE:  # a box filter first: the float arrays below stay a few MB
        image = image.reduce(-(-max(image.size) // WORKING_SIDE))
    if image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float32)
        top = 65535.0 if values.max(initial=0) > 255 else 255.0 if values.max(initial=0) > 1 else 1.0
        return values * (255.0 / top)
    if "A" not in image.getbands():
        return np.asarray(image.convert("L"), dtype=np.float32)
    levels = np.asarray(image.convert("LA"), dtype=np.float32)
    gray, alpha = levels[..., 0], levels[..., 1] / 255.0
    if alpha.min() == 1.0:
        return gray
    covered = alpha.sum()
    dark_ink = covered > 0 and (gray * alpha).sum() / covered < 127.5  # the drawn pixels' shade
    background = 255.0 if dark_ink else 0.0  # the stroke's opposite
    return gray * alpha + background * (1.0 - alpha)


def frame_digit(image: Image.Image, name: str = "the image") -> torch.Tensor:
    """Any image -> (28, 28) float pixels 0..255, white digit on black, as MNIST digits are made;
    DataError when it has no ink (every pixel one shade, or a transparent one)."""
    gray = gray_levels(image)
    if gray.max() - gray.min() < MIN_CONTRAST:
        raise DataError(
            f"{name} has no ink: every pixel is about the same shade ({gray.min():.0f} to {gray.max():.0f} "
            "of 255); send a digit drawn dark on light or light on dark"
        )
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if border.mean() > 127:  # dark digit on a light background: invert
        gray = 255 - gray
    ink = gray > 0.2 * gray.max()  # (gray.max() > 0: it has contrast)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    gray = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = gray.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    digit = np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    digit = digit.clip(0, 255)
    canvas = np.zeros((SIZE, SIZE), dtype=np.float32)
    mass = digit.sum()
    rows, cols = np.indices(digit.shape)
    cy, cx = ((rows * digit).sum() / mass, (cols * digit).sum() / mass) if mass else np.array(digit.shape) / 2
    top = int(np.clip(round(SIZE / 2 - cy), 0, SIZE - digit.shape[0]))
    left = int(np.clip(round(SIZE / 2 - cx), 0, SIZE - digit.shape[1]))
    canvas[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    return torch.from_numpy(canvas)
