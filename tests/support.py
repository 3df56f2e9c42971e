"""Test-only helpers the real CLI can load (via Hydra's _target_) in every DDP process."""

from __future__ import annotations

import json
import os
import signal as signal_module
from pathlib import Path

import lightning as L
import torch

from digitpipe.data.preprocess import write_dataset


def indexed_digits(n: int, seed: int, noise: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose first two pixels encode their index; a class block, plus `noise` wrong labels."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.randint(0, 40, (n, 28, 28), generator=g, dtype=torch.uint8)
    for i, label in enumerate(labels.tolist()):
        row, col = 4 + (label // 5) * 12, 2 + (label % 5) * 5
        images[i, row : row + 6, col : col + 6] = 255
        images[i, 0, 0], images[i, 0, 1] = i // 256, i % 256
    flip = torch.rand(n, generator=g) < noise
    labels[flip] = torch.randint(0, 10, (int(flip.sum()),), generator=g)
    return images, labels.to(torch.uint8)


def write_indexed_dataset(dataset: Path, stats: Path, sizes: dict[str, int], params: dict) -> None:
    """A processed dataset (the preprocess stage's format) whose samples carry their indices.

    It records `params` (a DatasetSource's) as if preprocess had made it with them: a training asking
    for that split uses it as it is, instead of rebuilding the split from the raw files.
    """
    tensors = {}
    for seed, (split, n) in enumerate(sizes.items()):
        tensors[f"{split}_images"], tensors[f"{split}_labels"] = indexed_digits(n, seed)
    write_dataset(dataset, stats, tensors, params, num_classes=10)


def decode_indices(images: torch.Tensor) -> list[int]:
    """Indices back from a scaled batch (N, 1, 28, 28) in [0, 1]."""
    pixels = (images[:, 0, 0, :2] * 255).round().long()
    return (pixels[:, 0] * 256 + pixels[:, 1]).tolist()


class IndexRecorder(L.Callback):
    """Writes, per rank and epoch, the sample indices this rank trained, validated and tested on."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir, self.seen = Path(out_dir), {}

    def _record(self, trainer: L.Trainer, stage: str, batch) -> None:
        if not trainer.sanity_checking:
            key = f"{stage}_rank{trainer.global_rank}_epoch{trainer.current_epoch}"
            self.seen.setdefault(key, []).extend(decode_indices(batch[0]))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._record(trainer, "train", batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._record(trainer, "val", batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._record(trainer, "test", batch)

    def _dump(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for key, indices in self.seen.items():
            (self.out_dir / f"{key}.json").write_text(json.dumps(indices))

    def on_fit_end(self, trainer, pl_module) -> None:
        self._dump()

    def on_test_end(self, trainer, pl_module) -> None:
        self._dump()


class SignalOnce(L.Callback):
    """Sends a real signal at a given epoch and batch of one rank, once per `marker` file (so a rerun
    with the very same config, which a resume requires, runs through): to its own process, or to the
    process group whose id `group_file` holds (a server the training talks to)."""

    def __init__(
        self, signal: str, epoch: int, batch: int = 0, rank: int = 0, marker: str = "signalled",
        group_file: str | None = None,
    ) -> None:  # fmt: skip
        self.signum, self.epoch, self.batch, self.rank = getattr(signal_module, signal), epoch, batch, rank
        self.marker, self.group_file = Path(marker), group_file

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        hit = (trainer.current_epoch, batch_idx, trainer.global_rank) == (self.epoch, self.batch, self.rank)
        if hit and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            if self.group_file:
                os.killpg(int(Path(self.group_file).read_text()), self.signum)
            else:
                os.kill(os.getpid(), self.signum)


class SlowSteps(L.Callback):
    """Sleeps after each training batch, so that a tiny training lasts long enough to be signalled
    or killed in the middle (`+callbacks.slow._target_=tests.support.SlowSteps`)."""

    def __init__(self, seconds: float = 0.1) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, *args, **kwargs) -> None:
        import time

        time.sleep(self.seconds)


class RunOnce(L.Callback):
    """Runs `bash script` at a given epoch and batch, once per `marker` file: a fault from outside
    the training (a database stopped under its tracking server) at a known moment."""

    def __init__(self, script: str, epoch: int, batch: int = 0, marker: str = "ran") -> None:
        self.script, self.epoch, self.batch, self.marker = script, epoch, batch, Path(marker)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch) and not self.marker.exists():
            import subprocess

            subprocess.run(["bash", self.script], check=True)
            self.marker.write_text(str(os.getpid()))
