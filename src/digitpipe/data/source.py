"""Where the processed dataset comes from and which split it must hold, built from the config once."""

from __future__ import annotations

import functools
import hashlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from digitpipe.config.numbers import whole_number
from digitpipe.data.download import Download, planned_download
from digitpipe.data.preprocess import build_splits, dataset_bytes, parse_dataset, read_raw, write_dataset
from digitpipe.errors import DataError
from digitpipe.paths import resolve


@dataclass(frozen=True)
class ProcessedDataset:
    """The split tensors (train_images, train_labels, val_images, ...) and the md5 of their file."""

    tensors: dict[str, torch.Tensor]
    md5: str  # DVC's hash of the file; for a split rebuilt in memory, of the bytes its file would have


@dataclass(frozen=True)
class DatasetSource:
    """The processed dataset's files, the raw files it is made from, and the split it must hold."""

    dataset: Path
    stats: Path
    fetch: Download  # the raw files it is made from
    seed: int  # of the validation split (data.split_seed)
    val_size: int
    image_size: int
    num_classes: int

    def params(self) -> dict[str, Any]:
        """What the split depends on, as the processed dataset records it (primitives only)."""
        raw_sha256 = {key: file.sha256 for key, file in self.fetch.files.items()}
        return {
            "seed": self.seed,
            "val_size": self.val_size,
            "image_size": self.image_size,
            "num_classes": self.num_classes,
            "raw_sha256": raw_sha256,
        }

    def download(self) -> None:
        self.fetch.run()

    def build(self) -> dict[str, torch.Tensor]:
        """The split tensors, made from the verified raw files."""
        raw = read_raw(self.fetch.raw_dir, self.fetch.files)
        return build_splits(raw, self.val_size, self.seed, self.image_size, self.num_classes)

    def preprocess(self) -> dict[str, Any]:
        """The preprocess stage: write the dataset and its stats (the same bytes for the same inputs)."""
        return write_dataset(self.dataset, self.stats, self.build(), self.params(), self.num_classes)

    def prepare(self) -> None:
        """Make load() possible without a download in every process (Lightning's prepare_data).

        Idempotent: downloads and preprocesses only if the dataset is missing, and fetches only the raw
        files if the dataset was made with other parameters (load() then rebuilds the split from them).
        An existing dataset is never rewritten: it is a DVC output other trainings may be reading.
        """
        if not self.dataset.is_file():
            self.download()
            self.preprocess()
        elif read_dataset(self.dataset)[1] != self.params():
            self.download()

    def load(self) -> ProcessedDataset:
        """The split this source asks for: the file's if it records these params, else rebuilt in memory.

        The file is a DVC output that trainings with other seeds may share: it is never rewritten here.
        """
        if not self.dataset.is_file():
            raise DataError(
                f"{self.dataset} is missing; run `dvc repro preprocess` or python src/preprocess.py"
            )
        tensors, recorded, md5 = read_dataset(self.dataset)
        expected = self.params()
        if recorded == expected:
            return ProcessedDataset(dict(tensors), md5)
        print(
            f"notice: {self.dataset} was made with other parameters ({param_changes(recorded, expected)}); "
            f"the split is rebuilt in memory from {self.fetch.raw_dir}, the file is left as it is",
            file=sys.stderr,
            flush=True,
        )
        self.download()
        tensors = self.build()
        return ProcessedDataset(tensors, hashlib.md5(dataset_bytes(tensors, expected)).hexdigest())


def read_dataset(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None, str]:
    """The dataset file's tensors, recorded params and md5, read, parsed and hashed once per process
    for as long as the file is the same one (size, mtime, inode): a search trains many times."""
    stat = path.stat()
    return _read_dataset(str(path.resolve()), (stat.st_size, stat.st_mtime_ns, stat.st_ino))


@functools.lru_cache(maxsize=2)
def _read_dataset(path: str, identity: tuple[int, int, int]):
    data = Path(path).read_bytes()
    tensors, recorded = parse_dataset(data, Path(path))
    return tensors, recorded, hashlib.md5(data).hexdigest()


def param_changes(recorded: Mapping[str, Any] | None, expected: Mapping[str, Any]) -> str:
    """Which recorded parameters differ from the expected ones, e.g. 'val_size 100 -> 150'."""
    if not recorded:
        return "it records none: an older version made it"

    def change(key: str) -> str:
        if isinstance(expected.get(key), Mapping):
            return f"other {key}"
        return f"{key} {recorded.get(key)} -> {expected.get(key)}"

    return ", ".join(change(k) for k in {**recorded, **expected} if recorded.get(k) != expected.get(k))


def dataset_md5(source: DatasetSource) -> str:
    """The md5 (DVC's hash) the processed dataset for `source` has, or would have as a file."""
    return source.load().md5


def dataset_source(cfg: DictConfig) -> DatasetSource:
    """The one place the config becomes a DatasetSource, its values checked."""
    data = cfg.data
    return DatasetSource(
        dataset=resolve(cfg.paths.dataset),
        stats=resolve(cfg.paths.stats),
        fetch=planned_download(cfg),
        seed=whole_number("data.split_seed", cfg.data.split_seed, positive=False),
        val_size=whole_number("data.val_size", data.val_size),
        image_size=whole_number("data.image_size", data.image_size),
        num_classes=whole_number("data.num_classes", data.num_classes),
    )
