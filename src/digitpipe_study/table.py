"""The study's comparison, from the cells' files (pure, on the rows those files hold):
per arm and activation, the mean over seeds of what the seed's argument is about."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from digitpipe.metric_names import TEST_ACC, TRAIN_ACC

UNIT_LAYERS = ("conv1", "conv2", "conv3", "dense1")  # the layers with an activation
EARLY_STEPS = 100  # the "slow start": gradient norms over the first 100 optimizer steps


@dataclass(frozen=True)
class CellResult:
    """What one cell left: its test metrics, history rows and diagnostics records (as read from CSV)."""

    arm: str
    activation: str
    seed: int
    lr: float
    run_id: str
    test: Mapping[str, float]
    history: Sequence[Mapping[str, str]]
    diagnostics: Sequence[Mapping[str, str]]

    def final(self, metric: str) -> dict[str, float]:
        """{layer: value} of a probe metric (dead, saturated) after the last epoch."""
        rows = [r for r in self.diagnostics if r["metric"] == metric]
        if not rows:
            return {}
        last = max(int(r["epoch"]) for r in rows)
        return {r["layer"]: float(r["value"]) for r in rows if int(r["epoch"]) == last}

    def early_grad_norm(self, layer: str, steps: int = EARLY_STEPS) -> float:
        rows = [r for r in self.diagnostics if r["metric"] == "grad_norm" and r["layer"] == layer]
        values = [float(r["value"]) for r in rows if int(r["step"]) <= steps]
        return statistics.fmean(values) if values else float("nan")

    def step_ms(self) -> float:
        values = [float(r["value"]) for r in self.diagnostics if r["metric"] == "step_ms"]
        return statistics.median(values) if values else float("nan")


@dataclass
class Row:
    arm: str
    activation: str
    lr: float
    cells: list[CellResult] = field(default_factory=list)

    def mean(self, values: Iterable[float]) -> float:
        values = list(values)
        return statistics.fmean(values) if values else float("nan")

    def summary(self) -> dict[str, Any]:
        """One row of the table (floats unrounded; the Markdown rounds)."""
        accs = [c.test[TEST_ACC] for c in self.cells]
        row: dict[str, Any] = {
            "arm": self.arm,
            "activation": self.activation,
            "lr": self.lr,
            "seeds": len(self.cells),
            "test_acc_mean": self.mean(accs),
            "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "train_acc_epoch1": self.mean(float(c.history[0][TRAIN_ACC]) for c in self.cells),
            "grad_norm_conv1_first100": self.mean(c.early_grad_norm("conv1") for c in self.cells),
        }
        for layer in UNIT_LAYERS:
            row[f"dead_{layer}"] = self.mean(c.final("dead").get(layer, float("nan")) for c in self.cells)
        saturated = [statistics.fmean(s.values()) for c in self.cells if (s := c.final("saturated"))]
        row["saturated_mean"] = self.mean(saturated) if saturated else float("nan")
        row["ms_per_step"] = self.mean(c.step_ms() for c in self.cells)
        return row


def group(results: Iterable[CellResult]) -> list[Row]:
    """Rows per (arm, activation), in the order the cells came."""
    rows: dict[tuple[str, str], Row] = {}
    for cell in results:
        key = (cell.arm, cell.activation)
        rows.setdefault(key, Row(cell.arm, cell.activation, cell.lr)).cells.append(cell)
    return list(rows.values())


COLUMNS = {  # CSV column -> Markdown heading
    "arm": "arm",
    "activation": "activation",
    "lr": "lr",
    "seeds": "seeds",
    "test_acc_mean": "test acc (mean ± std)",
    "train_acc_epoch1": "train acc, epoch 1",
    "grad_norm_conv1_first100": f"conv1 grad norm, steps 1-{EARLY_STEPS}",
    **{f"dead_{layer}": f"dead {layer}" for layer in UNIT_LAYERS},
    "saturated_mean": "saturated |z|>5",
    "ms_per_step": "ms/step",
}


def _cell(key: str, row: Mapping[str, Any]) -> str:
    value = row[key]
    if key == "test_acc_mean":
        return f"{value:.4f} ± {row['test_acc_std']:.4f}"
    if isinstance(value, float) and value != value:  # NaN: not measured for this activation
        return "–"
    if key.startswith("dead_") or key == "saturated_mean":
        return f"{value:.1%}"
    if key == "grad_norm_conv1_first100":
        return f"{value:.2e}"
    if key == "train_acc_epoch1":
        return f"{value:.4f}"
    if key == "ms_per_step":
        return f"{value:.1f}"
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    header = "| " + " | ".join(COLUMNS.values()) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(_cell(key, row) for key in COLUMNS) + " |" for row in rows]
    return "\n".join([header, rule, *body]) + "\n"
