"""Parse IDX files (the MNIST container format) into uint8 tensors, with validation."""

from __future__ import annotations

import math
import struct

import torch

from digitpipe.errors import DataError

UBYTE = 0x08


def parse_idx(data: bytes, name: str, ndim: int) -> torch.Tensor:
    """Parse an unsigned-byte IDX file with `ndim` dimensions into a uint8 tensor."""
    if len(data) < 4:
        raise DataError(f"{name}: {len(data)} bytes is too short for an IDX header; re-run download")
    zero, dtype, found_ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != UBYTE or found_ndim != ndim:
        raise DataError(
            f"{name}: bad IDX magic number 0x{data[:4].hex()} (expected 0x0000{UBYTE:02x}{ndim:02x}); "
            "the file is not an IDX file of the expected kind, delete it and re-run download"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated IDX header; delete it and re-run download")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + math.prod(shape)
    if len(data) != expected:
        raise DataError(
            f"{name}: header declares shape {tuple(shape)} ({expected} bytes) but the file has "
            f"{len(data)} bytes; delete it and re-run download"
        )
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).reshape(shape)


def parse_images(data: bytes, name: str, image_size: int) -> torch.Tensor:
    """Parse an IDX image file and check the images are image_size x image_size."""
    images = parse_idx(data, name, ndim=3)
    if tuple(images.shape[1:]) != (image_size, image_size):
        raise DataError(
            f"{name}: images are {tuple(images.shape[1:])}, expected ({image_size}, {image_size})"
        )
    return images


def parse_labels(data: bytes, name: str, num_classes: int) -> torch.Tensor:
    """Parse an IDX label file and check every label is a valid class index."""
    labels = parse_idx(data, name, ndim=1)
    if len(labels) and int(labels.max()) >= num_classes:
        raise DataError(f"{name}: label {int(labels.max())} is outside 0..{num_classes - 1}")
    return labels


def encode_idx(array: torch.Tensor) -> bytes:
    """Encode a uint8 tensor as an IDX file (the inverse of parse_idx; used to make test data)."""
    header = struct.pack(">HBB", 0, UBYTE, array.dim()) + struct.pack(f">{array.dim()}I", *array.shape)
    return header + array.contiguous().numpy().tobytes()
