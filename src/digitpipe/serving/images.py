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


def decode(source: str | Path | BinaryIO, name: str) -> Image.Image:
    """The decoded image (`name` says what it was in messages); refused, like PIL's
    decompression-bomb error, above Image.MAX_IMAGE_PIXELS."""
    try:
        with warnings.catch_warnings():
            # PIL only warns between 1x and 2x its limit; no digit needs that many pixels, and decoding them
            # (then ~4 bytes a pixel in frame_digit) costs gigabytes, so the warning is refused like the error
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
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


def frame_digit(image: Image.Image) -> torch.Tensor:
    """Any image -> (28, 28) float pixels 0..255, white digit on black, as MNIST digits are made."""
    gray = np.asarray(ImageOps.exif_transpose(image).convert("L"), dtype=np.float32)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if border.mean() > 127:  # dark digit on a light background: invert
        gray = 255 - gray
    ink = np.argwhere(gray > 0.2 * gray.max()) if gray.max() > 0 else np.empty((0, 2))
    if len(ink):
        (top, left), (bottom, right) = ink.min(0), ink.max(0) + 1
        gray = gray[top:bottom, left:right]
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
