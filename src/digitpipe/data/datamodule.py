"""The LightningDataModule: in-memory uint8 tensors, batched by index, scaled on the device."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset

from digitpipe.data import SPLITS
from digitpipe.data.source import DatasetSource


class InMemoryDigits(Dataset):
    """Images and labels held as tensors; a batch is one fancy-indexing call, not N samples."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices)
        return self.images[index], self.labels[index]


def keep_batch(batch: Any) -> Any:
    """collate_fn for datasets whose __getitems__ already returns a whole batch."""
    return batch


def scale_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W) -> float (N, 1, H, W) in [0, 1], as the seed does."""
    return images.unsqueeze(1).float().div_(255)


class DigitsDataModule(L.LightningDataModule):
    """The splits `source` asks for, in batches; data_md5 (after setup) is the hash of their file."""

    def __init__(self, source: DatasetSource, batch_size: int, eval_batch_size: int) -> None:
        super().__init__()
        self.source = source
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.splits: dict[str, InMemoryDigits] = {}
        self.data_md5: str | None = None

    def prepare_data(self) -> None:
        self.source.prepare()

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        dataset = self.source.load()
        for split in SPLITS:
            labels = dataset.tensors[f"{split}_labels"].long()
            self.splits[split] = InMemoryDigits(dataset.tensors[f"{split}_images"], labels)
        self.data_md5 = dataset.md5

    def pixel_stats(self) -> tuple[float, float]:
        """Mean and std of the training images scaled to [0, 1] (for models that standardise)."""
        train = scale_images(self.splits["train"].images)
        return train.mean().item(), train.std().item()

    def probe_images(self, count: int) -> torch.Tensor:
        """The first `count` validation images, scaled: a fixed set to measure a model on."""
        return scale_images(self.splits["val"].images[:count])

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        dataset = self.splits[split]
        trainer = self.trainer
        if split != "train" and trainer is not None and trainer.world_size > 1:
            # Lightning's default DistributedSampler pads the last batch with repeats, which would
            # count some test images twice; this one shards without padding (ranks may differ by one)
            sampler = UnrepeatedDistributedSampler(
                dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
            )
            return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=keep_batch)
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=keep_batch)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        return scale_images(images), labels
