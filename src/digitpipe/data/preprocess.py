"""Turn the raw IDX files into compact uint8 tensors (train/val/test) plus a small stats file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from digitpipe import io as atomic
from digitpipe.data.download import dataset_files, run_download
from digitpipe.data.idx import parse_images, parse_labels
from digitpipe.data.split import stratified_split
from digitpipe.errors import DataError
from digitpipe.paths import resolve

SPLITS = ("train", "val", "test")


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


def run_preprocess(cfg: DictConfig) -> dict[str, Any]:
    """The preprocess stage: raw IDX files -> paths.dataset (tensors) and paths.stats (JSON)."""
    raw_dir = resolve(cfg.paths.raw_dir)
    raw = {}
    for key, file in dataset_files(cfg.data.files).items():
        path = raw_dir / file.name
        if not path.is_file():
            raise DataError(f"{path} is missing; run the download stage first (python src/download.py)")
        raw[key] = path.read_bytes()
    d = cfg.data
    tensors = build_splits(raw, d.val_size, cfg.seed, d.image_size, d.num_classes)
    stats = dataset_stats(tensors, d.num_classes)
    atomic.write_with(resolve(cfg.paths.dataset), lambda tmp: torch.save(tensors, tmp))
    atomic.write_json(resolve(cfg.paths.stats), stats)
    return stats


def ensure_dataset(cfg: DictConfig) -> Path:
    """Download and preprocess if the processed dataset is missing (the stages' own code)."""
    dataset = resolve(cfg.paths.dataset)
    if not (dataset.is_file() and resolve(cfg.paths.stats).is_file()):
        run_download(cfg)
        run_preprocess(cfg)
    return dataset


def load_dataset(path: Path) -> dict[str, torch.Tensor]:
    """Load the processed tensors (plain tensors only, so weights_only loading is safe)."""
    if not path.is_file():
        raise DataError(f"{path} is missing; run `dvc repro preprocess` or python src/preprocess.py")
    try:
        return torch.load(path, weights_only=True)
    except Exception as err:  # torch raises several types for a corrupt file
        raise DataError(f"{path} is not a readable dataset ({err}); delete it and re-run preprocess") from err
