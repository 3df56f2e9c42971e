"""Turn the raw IDX files into compact uint8 tensors (train/val/test) plus a small stats file."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from digitpipe import atomic
from digitpipe.data import SPLITS
from digitpipe.data.download import DatasetFile, sha256_of
from digitpipe.data.idx import parse_images, parse_labels
from digitpipe.data.split import stratified_split
from digitpipe.errors import DataError

PARAMS_KEY = "params"  # the parameters that made the dataset, stored beside its tensors


def read_raw(raw_dir: Path, files: Mapping[str, DatasetFile]) -> dict[str, bytes]:
    """The raw files' bytes by key, each checked against its sha256 (a flipped byte must not become data)."""
    raw = {}
    for key, file in files.items():
        path = raw_dir / file.name
        if not path.is_file():
            raise DataError(f"{path} is missing; run the download stage first (python src/download.py)")
        raw[key] = path.read_bytes()
        digest = sha256_of(raw[key])
        if digest != file.sha256:
            raise DataError(
                f"{path} has sha256 {digest[:12]}..., expected {file.sha256[:12]}... (data.files.{key}); "
                "it is corrupt: delete it and re-run download (python src/download.py)"
            )
    return raw


def build_splits(
    raw: Mapping[str, bytes], val_size: int, seed: int, image_size: int, num_classes: int
) -> dict[str, torch.Tensor]:
    """Parse the four raw files (keyed train_images, train_labels, ...) and split off validation."""
    tensors = {}
    for part in ("train", "test"):
        images = parse_images(raw[f"{part}_images"], f"{part}_images", image_size)
        labels = parse_labels(raw[f"{part}_labels"], f"{part}_labels", num_classes)
        if len(images) != len(labels):
            raise DataError(f"{part}: {len(images)} images but {len(labels)} labels")
        tensors[f"{part}_images"], tensors[f"{part}_labels"] = images, labels
    train_idx, val_idx = stratified_split(tensors["train_labels"], val_size, seed)
    images, labels = tensors.pop("train_images"), tensors.pop("train_labels")
    tensors |= {"train_images": images[train_idx], "train_labels": labels[train_idx]}
    tensors |= {"val_images": images[val_idx], "val_labels": labels[val_idx]}
    return tensors


def dataset_stats(tensors: Mapping[str, torch.Tensor], num_classes: int) -> dict[str, Any]:
    """Sizes and class counts per split, and the training pixels' mean/std (after /255)."""
    train = tensors["train_images"].double() / 255
    return {
        "pixel_mean": train.mean().item(),
        "pixel_std": train.std().item(),
        "sizes": {s: len(tensors[f"{s}_labels"]) for s in SPLITS},
        "class_counts": {
            s: torch.bincount(tensors[f"{s}_labels"].long(), minlength=num_classes).tolist() for s in SPLITS
        },
    }


def dataset_bytes(tensors: Mapping[str, torch.Tensor], params: Mapping[str, Any]) -> bytes:
    """The processed file's bytes: the same tensors and params always give the same bytes.

    torch.save to a path names the archive after the file (a random temp name here); to a buffer the
    name is fixed. `params` holds primitives only, so the file still loads with weights_only=True.
    """
    buffer = io.BytesIO()
    torch.save({**tensors, PARAMS_KEY: dict(params)}, buffer)
    return buffer.getvalue()


def parse_dataset(data: bytes, name: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """The split tensors and the recorded params (None from a version that recorded none)."""
    try:
        content = torch.load(io.BytesIO(data), weights_only=True)
    except Exception as err:  # torch raises several types for a corrupt file
        raise DataError(f"{name} is not a readable dataset ({err}); delete it and re-run preprocess") from err
    expected = [f"{split}_{kind}" for split in SPLITS for kind in ("images", "labels")]
    if not isinstance(content, dict) or not set(expected) <= set(content):
        raise DataError(f"{name} is not a processed dataset (no {', '.join(expected)}); re-run preprocess")
    params = content.pop(PARAMS_KEY, None)
    return content, params


def write_dataset(
    dataset: Path, stats_path: Path, tensors: Mapping[str, torch.Tensor], params: Mapping[str, Any],
    num_classes: int,
) -> dict[str, Any]:  # fmt: skip
    """Write the processed tensors and their stats atomically, both recording `params`; return the stats."""
    stats = dataset_stats(tensors, num_classes) | {PARAMS_KEY: dict(params)}
    atomic.write_bytes(dataset, dataset_bytes(tensors, params))
    atomic.write_json(stats_path, stats)
    return stats
