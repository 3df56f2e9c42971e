"""One run's diagnostics as files: the records as CSV, and a figure (gradient norm per layer over
steps; dead and saturated fraction per layer over epochs)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from digitpipe import atomic
from digitpipe.diagnostics.callback import COLUMNS
from digitpipe.evaluation.plots import plt, png_bytes


def series(records: Iterable[Mapping[str, Any]], metric: str) -> dict[str, tuple[list, list]]:
    """{layer: (x, values)} of one metric; x is the step for grad_norm, the epoch otherwise."""
    out: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    for row in records:
        if row["metric"] == metric:
            xs, ys = out[row["layer"]]
            xs.append(row["step"] if metric == "grad_norm" else row["epoch"])
            ys.append(row["value"])
    return dict(out)


def diagnostics_figure(records: list[Mapping[str, Any]], title: str) -> Figure:
    panels = [m for m in ("grad_norm", "dead", "saturated") if series(records, m)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), dpi=110, squeeze=False)
    labels = {
        "grad_norm": ("optimizer step", "L2 norm of the weight gradient", "Gradient norm per layer"),
        "dead": ("epoch (0: at initialisation)", "fraction of units never positive", "Dead units"),
        "saturated": ("epoch (0: at initialisation)", "fraction of |z| > threshold", "Saturation"),
    }
    for ax, metric in zip(axes[0], panels, strict=True):
        for layer, (xs, ys) in series(records, metric).items():
            ax.plot(xs, ys, "-" if metric == "grad_norm" else "o-", label=layer, linewidth=1)
        xlabel, ylabel, heading = labels[metric]
        ax.set(xlabel=xlabel, ylabel=ylabel, title=heading)
        if metric == "grad_norm":
            ax.set_yscale("log")
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylim(bottom=-0.02, top=1.02 if metric == "dead" else None)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


DIAGNOSTICS_CSV, DIAGNOSTICS_PNG = "diagnostics.csv", "diagnostics.png"


def diagnostics_files(records: list[Mapping[str, Any]], title: str) -> dict[str, bytes]:
    """The records as a CSV (one measurement per row) and the figure as a PNG, by file name."""
    return {
        DIAGNOSTICS_CSV: atomic.csv_text(records, COLUMNS).encode(),
        DIAGNOSTICS_PNG: png_bytes(diagnostics_figure(records, title)),
    }
