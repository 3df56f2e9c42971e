"""Dead units and saturation per layer, measured on a fixed set of probe images (pure functions).

A unit (a conv channel or a dense unit) is dead when its activation output is never positive for
any probe image: zero in, zero gradient through ReLU, so it never recovers. The same definition
for every activation (Leaky ReLU, ELU, GELU, SiLU, tanh: never positive), so the columns compare.
A pre-activation is saturated when |z| exceeds the threshold (the seed's 5: sigmoid'(5) = 0.0066).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

SATURATING = ("sigmoid", "tanh")  # where saturation is reported


def activation_layers(net: nn.Module) -> dict[str, nn.Module]:
    """Each activation module, named after the weight layer whose output it transforms:
    {"conv1": act1, "conv2": act2, "conv3": act3, "dense1": act4} for the seed's convnet."""
    named, layer = {}, None
    for name, module in net.named_children():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            layer = name
        elif layer is not None and not isinstance(module, (nn.MaxPool2d, nn.Flatten, nn.Dropout)):
            named[layer] = module
            layer = None
    return named


def weight_layers(net: nn.Module) -> list[str]:
    """The weight layers in order: conv1, conv2, conv3, dense1, dense2."""
    return [name for name, module in net.named_children() if isinstance(module, (nn.Conv2d, nn.Linear))]


class _Accumulator:
    """Per layer: the largest activation output seen per unit, and the count of saturated inputs."""

    def __init__(self, threshold: float | None) -> None:
        self.threshold = threshold  # None: saturation not counted
        self.peak: torch.Tensor | None = None
        self.saturated = 0
        self.total = 0

    def __call__(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        (z,) = inputs
        peak = output.amax(dim=[d for d in range(output.dim()) if d != 1])  # per unit: dim 1
        self.peak = peak if self.peak is None else torch.maximum(self.peak, peak)
        if self.threshold is not None:
            self.saturated += int((z.abs() > self.threshold).sum())
            self.total += z.numel()


def _chunks(images: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    for start in range(0, len(images), size):
        yield images[start : start + size]


@torch.no_grad()
def unit_statistics(
    model: nn.Module, net: nn.Module, images: torch.Tensor, threshold: float | None = 5.0, chunk: int = 500
) -> dict[str, dict[str, float]]:
    """{"dead": {layer: fraction of units never positive}, "saturated": {layer: fraction of
    pre-activations with |z| > threshold}} over `images`, run through `model` (which contains `net`,
    e.g. with its input standardisation) in chunks; the model's train/eval mode is restored.
    threshold None: only "dead" (saturation costs a pass over every pre-activation)."""
    accumulators = {name: _Accumulator(threshold) for name in activation_layers(net)}
    hooks = [module.register_forward_hook(accumulators[name])
             for name, module in activation_layers(net).items()]  # fmt: skip
    was_training = model.training
    model.eval()
    try:
        for batch in _chunks(images, chunk):
            model(batch)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    dead = {name: float((acc.peak <= 0).float().mean()) for name, acc in accumulators.items()}
    if threshold is None:
        return {"dead": dead}
    saturated = {name: acc.saturated / max(acc.total, 1) for name, acc in accumulators.items()}
    return {"dead": dead, "saturated": saturated}
