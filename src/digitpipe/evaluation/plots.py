"""Figures for MLflow: readable at a glance, written as PNG."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG bytes (written where and how the caller decides); the figure is closed."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


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


def curves_figure(history: list[dict[str, float]]) -> Figure:
    """Loss and accuracy per epoch, train vs validation."""
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    for ax, metric in zip(axes, ("loss", "acc"), strict=True):
        for split, style in (("train", "o-"), ("val", "s--")):
            ax.plot(epochs, [row[f"{split}/{metric}"] for row in history], style, label=split)
        ax.set(xlabel="epoch", ylabel=metric, title=f"{metric} per epoch", xticks=epochs)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def misclassified_figure(
    images: torch.Tensor, labels: torch.Tensor, probabilities: torch.Tensor, count: int = 24
) -> Figure:
    """The test digits the model got wrong with the most confidence: true label, prediction, p."""
    confidence, predicted = probabilities.max(dim=1)
    wrong = (predicted != labels).nonzero().flatten()
    worst = wrong[confidence[wrong].argsort(descending=True)][:count]
    columns = 8
    rows = max(1, -(-len(worst) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.3, rows * 1.8), dpi=110, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, index in zip(axes.flat, worst.tolist(), strict=False):
        ax.imshow(images[index], cmap="gray")
        ax.set_title(f"true {labels[index]} pred {predicted[index]}\np={confidence[index]:.2f}", fontsize=7)
    fig.suptitle(f"Most confident mistakes ({len(wrong)} errors in {len(labels)})", fontsize=10)
    fig.tight_layout()
    return fig
