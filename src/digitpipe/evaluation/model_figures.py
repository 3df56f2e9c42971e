"""Looking inside the network: the seed's learnt filters and feature maps, and its activation."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import nn  # noqa: E402

from digitpipe.models.convnet import make_activation  # noqa: E402


def _grid(maps: torch.Tensor, title: str, columns: int = 8, cmap: str = "viridis") -> Figure:
    rows = math.ceil(len(maps) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.1, rows * 1.1 + 0.5), dpi=110, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image in zip(axes.flat, maps, strict=False):
        ax.imshow(image, cmap=cmap)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def filters_figure(conv: nn.Conv2d) -> Figure:
    """The first layer's 3x3 kernels (the seed's "Visualize Learnt Filters")."""
    weights = conv.weight.detach()[:, 0]
    return _grid(weights, f"{len(weights)} learnt filters of the first conv layer", cmap="gray")


@torch.no_grad()
def feature_map_figures(net: nn.Sequential, image: torch.Tensor) -> dict[str, Figure]:
    """Each conv layer's activated output for one (1, 28, 28) scaled digit."""
    figures, x = {}, image.unsqueeze(0)
    children = list(net.named_children())
    for i, (name, module) in enumerate(children):
        x = module(x)
        if isinstance(module, nn.Conv2d):
            activated = children[i + 1][1](x)
            figures[name] = _grid(
                activated[0], f"{name}: {activated.shape[1]} feature maps, {tuple(x.shape[2:])}"
            )
    return figures


def activation_figure(name: str, negative_slope: float) -> Figure:
    """The activation and its derivative over z in [-8, 8]: where gradients vanish or die."""
    z = torch.linspace(-8, 8, 801, requires_grad=True)
    y = make_activation(name, negative_slope)(z)
    (grad,) = torch.autograd.grad(y.sum(), z)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    ax.plot(z.detach(), y.detach(), label=f"{name}(z)")
    ax.plot(z.detach(), grad, "--", label=f"d {name}/dz")
    ax.axhline(0, color="gray", lw=0.5)
    ax.set(xlabel="z", title=f"{name} and its derivative", ylim=(-1.5, 3.0))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig
