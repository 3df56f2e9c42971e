"""Figures for MLflow: readable at a glance, written as PNG."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def confusion_figure(confusion: torch.Tensor, title: str = "Confusion matrix (test set)") -> Figure:
    counts = confusion.numpy()
    n = counts.shape[0]
    fig, ax = plt.subplots(figsize=(7, 6), dpi=110)
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    threshold = counts.max() / 2
    for true in range(n):
        for pred in range(n):
            colour = "white" if counts[true, pred] > threshold else "black"
            ax.text(pred, true, str(counts[true, pred]), ha="center", va="center", fontsize=8, color=colour)
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return fig
