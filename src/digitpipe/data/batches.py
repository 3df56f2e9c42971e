"""Batches drawn by index from tensors that already sit on the training device.

The whole uint8 dataset (55 MB for MNIST) moves to the device once; a batch is then a slice of an
index permutation and one gather, with no DataLoader, no per-batch host-to-device copy and no sync.
The same code serves the CPU (where it also saves the DataLoader's per-batch Python).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Split:
    """One split's images (N, H, W uint8) and labels (N, int64), on one device."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device) -> Split:
        return Split(self.images.to(device), self.labels.to(device))


class EpochOrder:
    """Which indices one rank visits in an epoch, and in what order.

    Shuffled: a permutation drawn from (seed, epoch) alone, so the order is the same on any device,
    whatever else consumed random numbers, and after a resume. Under DDP each rank takes every
    world_size-th index; a shuffled (training) order is padded by wrap-around so that every rank runs
    the same number of steps (as DistributedSampler), an unshuffled (evaluation) one is not, so no
    image is counted twice (as UnrepeatedDistributedSampler).
    """

    def __init__(self, size: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        if self.shuffle:
            return -(-self.size // self.world_size)
        return len(range(self.rank, self.size, self.world_size))

    def indices(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.rank, self.size, self.world_size)
        generator = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(self.size, generator=generator)
        padded = len(self) * self.world_size
        if padded > self.size:
            order = torch.cat([order, order[: padded - self.size]])
        return order[self.rank :: self.world_size]


class IndexBatches:
    """(images, labels) batches of `split` in the order `order` gives for the epoch `epoch()` returns
    when an iteration starts (the Trainer's current epoch); the last batch may be smaller."""

    def __init__(self, split: Split, batch_size: int, order: EpochOrder, epoch: Callable[[], int]) -> None:
        self.split, self.batch_size, self.order, self.epoch = split, batch_size, order, epoch

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # one host-to-device copy of the epoch's indices; slicing them is free
        order = self.order.indices(self.epoch()).to(self.split.labels.device, non_blocking=True)
        for batch in order.split(self.batch_size):
            yield self.split.images[batch], self.split.labels[batch]
