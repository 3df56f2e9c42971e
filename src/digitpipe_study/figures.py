"""The study's comparison figures: accuracy per epoch, early gradient norms per layer, dead units."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence

from matplotlib.figure import Figure

from digitpipe.diagnostics.probe import weight_layers
from digitpipe.evaluation.plots import plt
from digitpipe.models.convnet import build_convnet
from digitpipe.serving.images import SIZE as MNIST_SIZE
from digitpipe_study.table import UNIT_LAYERS, Row

LAYERS = weight_layers(build_convnet("relu", 0.1, 10, "glorot", MNIST_SIZE))  # conv1 .. dense2 (names only)


def label(row: Row) -> str:
    return f"{row.activation} (lr {row.lr:g})" if row.arm == "dying" else row.activation


def accuracy_figure(rows: Sequence[Row]) -> Figure:
    """Train and validation accuracy per epoch, mean over seeds; the dying arm dashed."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    for ax, split in zip(axes, ("train", "val"), strict=True):
        for row in rows:
            epochs, means = mean_per_epoch(row, f"{split}/acc")
            ax.plot(epochs, means, "o--" if row.arm == "dying" else "o-", label=label(row))
        ax.set(xlabel="epoch", ylabel="accuracy", title=f"{split} accuracy per epoch (mean over seeds)")
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def mean_per_epoch(row: Row, column: str) -> tuple[list[int], list[float]]:
    """A history column per epoch, mean over the row's seeds."""
    per_epoch = defaultdict(list)
    for cell in row.cells:
        for h in cell.history:
            per_epoch[int(h["epoch"])].append(float(h[column]))
    epochs = sorted(per_epoch)
    return epochs, [statistics.fmean(per_epoch[e]) for e in epochs]


def mean_grad_norms(row: Row, layer: str, last_step: int) -> tuple[list[int], list[float]]:
    per_step = defaultdict(list)
    for cell in row.cells:
        for r in cell.diagnostics:
            if r["metric"] == "grad_norm" and r["layer"] == layer and int(r["step"]) <= last_step:
                per_step[int(r["step"])].append(float(r["value"]))
    steps = sorted(per_step)
    return steps, [statistics.fmean(per_step[s]) for s in steps]


def grad_norm_figure(rows: Sequence[Row], last_step: int) -> Figure:
    """Gradient norm per layer over the first steps, one line per activation (mean over seeds)."""
    fig, axes = plt.subplots(1, len(LAYERS), figsize=(4 * len(LAYERS), 3.6), dpi=110, sharey=True)
    for ax, layer in zip(axes, LAYERS, strict=True):
        for row in rows:
            steps, norms = mean_grad_norms(row, layer, last_step)
            ax.plot(steps, norms, "--" if row.arm == "dying" else "-", linewidth=1, label=label(row))
        ax.set(xlabel="optimizer step", title=layer, yscale="log")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("L2 norm of the weight gradient")
    axes[-1].legend(fontsize=7)
    fig.suptitle(f"Gradient norm per layer, first {last_step} steps (mean over seeds)", fontsize=10)
    fig.tight_layout()
    return fig


def dead_units_figure(rows: Sequence[Row]) -> Figure:
    """Dead fraction per layer after the last epoch, bars per activation; one panel per arm."""
    arms = sorted({row.arm for row in rows}, key=["base", "dying"].index)
    fig, axes = plt.subplots(1, len(arms), figsize=(6 * len(arms), 4), dpi=110, squeeze=False, sharey=True)
    for ax, arm in zip(axes[0], arms, strict=True):
        in_arm = [row for row in rows if row.arm == arm]
        width = 0.8 / len(in_arm)
        for i, row in enumerate(in_arm):
            summary = row.summary()
            xs = [j + (i - (len(in_arm) - 1) / 2) * width for j in range(len(UNIT_LAYERS))]
            ax.bar(xs, [summary[f"dead_{layer}"] for layer in UNIT_LAYERS], width, label=label(row))
        ax.set_xticks(range(len(UNIT_LAYERS)), UNIT_LAYERS)
        ax.set(ylabel="fraction of units never positive", ylim=(0, 1),
               title=f"Dead units after training ({arm} arm, lr {in_arm[0].lr:g})")  # fmt: skip
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
