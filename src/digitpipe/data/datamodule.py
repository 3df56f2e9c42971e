"""The LightningDataModule: uint8 splits held on the training device, batched by index there."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from digitpipe.data import SPLITS
from digitpipe.data.batches import EpochOrder, IndexBatches, Split
from digitpipe.data.source import DatasetSource


def scale_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W) -> float (N, 1, H, W) in [0, 1], as the seed does."""
    return images.unsqueeze(1).float().div_(255)


class DigitsDataModule(L.LightningDataModule):
    """The splits `source` asks for, in batches; data_md5 (after setup) is the hash of their file."""

    def __init__(
        self,
        source: DatasetSource,
        batch_size: int,
        eval_batch_size: int,
        seed: int,
    ) -> None:
        super().__init__()
        self.source = source
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed
        self.splits: dict[str, Split] = {}  # on the CPU; each loader copies its split to the device once
        self.data_md5: str | None = None

    def prepare_data(self) -> None:
        self.source.prepare()

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        dataset = self.source.load()
        for split in SPLITS:
            labels = dataset.tensors[f"{split}_labels"].long()
            self.splits[split] = Split(dataset.tensors[f"{split}_images"], labels)
        self.data_md5 = dataset.md5

    def pixel_stats(self) -> tuple[float, float]:
        """Mean and std of the training images scaled to [0, 1] (for models that standardise)."""
        train = scale_images(self.splits["train"].images)
        return train.mean().item(), train.std().item()

    def probe_images(self, count: int) -> torch.Tensor:
        """The first `count` validation images, scaled: a fixed set to measure a model on."""
        return scale_images(self.splits["val"].images[:count])

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> IndexBatches:
        trainer = self.trainer
        if trainer is None:  # outside a Trainer: the whole split, on the CPU, as in epoch 0
            device, rank, world_size, epoch = torch.device("cpu"), 0, 1, lambda: 0
        else:
            device, rank, world_size = trainer.strategy.root_device, trainer.global_rank, trainer.world_size
            epoch = lambda: trainer.current_epoch  # noqa: E731 (read when an epoch's iteration starts)
        order = EpochOrder(len(self.splits[split]), shuffle, self.seed, rank, world_size)
        return IndexBatches(self.splits[split].to(device), batch_size, order, epoch)

    def train_dataloader(self) -> IndexBatches:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> IndexBatches:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> IndexBatches:
        return self._loader("test", self.eval_batch_size, shuffle=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, torch.Tensor):  # the model's example_input_array, in Lightning's summary
            return batch
        images, labels = batch
        return scale_images(images), labels
