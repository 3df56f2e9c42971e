"""The convnet's tensors in channels-last (NHWC) memory layout while a Trainer runs it."""

from __future__ import annotations

import lightning as L
import torch


class ChannelsLast(L.Callback):
    """Convert the module's 4-D weights to channels-last before the Trainer sets up the optimizer.

    Convolutions then take oneDNN's NHWC kernels and hand NHWC activations on, which also spares
    max-pooling PyTorch's NCHW CPU kernel, which is scalar.
    The (N, 1, H, W) input batches need no conversion: with one channel both layouts are the same.
    Values are the same up to float rounding, and a run is as reproducible as before; checkpoints
    are layout-free (a state dict loads into either layout). What it gains on a CPU, and not on a
    GPU: docs/speed.md.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # before the strategy moves the module, wraps it in DDP and creates the optimizer; a
        # checkpoint restored later copies its values into these tensors, keeping their layout
        pl_module.to(memory_format=torch.channels_last)
