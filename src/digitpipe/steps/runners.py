"""One optimizer step (forward, cross-entropy, backward, update), run eagerly or as a CUDA graph.

A 93k-parameter network at batch 64 is bound by the host launching its ~40 kernels one by one, not
by the GPU's arithmetic (docs/speed.md). `GraphedStep` captures the whole step once, the
optimizer's update included, and then replays it: one launch per step. It follows the recipe of
torch.cuda.graphs' "whole network capture": a capturable optimizer, warm-up steps on a side stream,
gradients allocated inside the capture, inputs copied into the graph's static tensors.

Every batch trains exactly once, whatever runs it: the warm-up steps are real training steps (run
eagerly), capturing computes nothing, so the batch it was captured with is then replayed, and a batch
of another shape (an epoch's smaller last batch) runs eagerly on the same parameters and optimizer
state. Both runners return the step's loss and logits, detached, for the metrics.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.optim import Optimizer

Forward = Callable[[torch.Tensor], torch.Tensor]


class EagerStep:
    """The step as PyTorch runs it, op by op."""

    def __init__(self, forward: Forward, optimizer: Optimizer) -> None:
        self.forward, self.optimizer = forward, optimizer

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.forward(images)
        loss = F.cross_entropy(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), logits.detach()


class GraphedStep:
    """The step captured as one CUDA graph at the first batch after `warmup` eager ones, replayed for
    every batch of that shape. The optimizer must have been built with capturable=True."""

    def __init__(self, forward: Forward, optimizer: Optimizer, warmup: int = 3) -> None:
        if not optimizer.defaults.get("capturable", False):
            raise ValueError(f"{type(optimizer).__name__} must be built with capturable=True to be graphed")
        self.eager = EagerStep(forward, optimizer)
        self.forward, self.optimizer, self.warmup = forward, optimizer, warmup
        self.graph: torch.cuda.CUDAGraph | None = None
        self.shape: torch.Size | None = None  # the batch shape the graph is (or will be) captured for
        self.static: dict[str, torch.Tensor] = {}
        self.replays = 0  # steps the graph ran (the rest ran eagerly)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.shape is None:
            self.shape = images.shape
        if images.shape != self.shape:
            return self.eager(images, labels)
        if self.graph is None:
            if self.warmup > 0:
                self.warmup -= 1
                return self._on_side_stream(images, labels)
            self._capture(images, labels)
        self.static["images"].copy_(images)
        self.static["labels"].copy_(labels)
        self.graph.replay()
        self.replays += 1
        return self.static["loss"].clone(), self.static["logits"].clone()

    def _on_side_stream(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """An eager step on a side stream, as capture's warm-up must be (lazy initialisations such
        as cuDNN's and the optimizer's state happen here, outside the graph)."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), warnings.catch_warnings():
            # torch's advice to build the optimizer without capturable when no graph is captured
            # (warned once, at the first eager step): this one is captured right after the warm-up
            warnings.filterwarnings("ignore", "This instance was constructed with capturable=True")
            result = self.eager(images, labels)
        torch.cuda.current_stream().wait_stream(side)
        return result

    def _capture(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.static = {"images": images.clone(), "labels": labels.clone()}
        self.optimizer.zero_grad(set_to_none=True)  # backward allocates the gradients in the graph's pool
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            logits = self.forward(self.static["images"])
            loss = F.cross_entropy(logits, self.static["labels"])
            loss.backward()
            self.optimizer.step()
        self.static |= {"logits": logits.detach(), "loss": loss.detach()}
        self.graph = graph
