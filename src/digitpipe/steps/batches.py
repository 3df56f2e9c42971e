"""The training batches handed to SteppedClassifier several at a time: the same batches, in order."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sized
from typing import Any

from digitpipe.data.datamodule import DigitsDataModule, scale_images


class Grouped:
    """Lists of up to `size` consecutive items of `batches` (the last list may be shorter)."""

    def __init__(self, batches: Any, size: int) -> None:
        self.batches, self.size = batches, size

    def __len__(self) -> int:
        assert isinstance(self.batches, Sized)
        return -(-len(self.batches) // self.size)

    def __iter__(self) -> Iterator[list]:
        items = iter(self.batches)
        while group := list(itertools.islice(items, self.size)):
            yield group


class GroupedDataModule(DigitsDataModule):
    """DigitsDataModule whose training loader yields `steps_per_batch` batches per item."""

    def __init__(self, *args: Any, steps_per_batch: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.steps_per_batch = steps_per_batch

    def train_dataloader(self) -> Grouped:
        return Grouped(super().train_dataloader(), self.steps_per_batch)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, list):  # a group of training batches
            return [(scale_images(images), labels) for images, labels in batch]
        return super().on_after_batch_transfer(batch, dataloader_idx)
