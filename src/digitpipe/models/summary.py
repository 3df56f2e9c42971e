"""A Keras-style model summary: layer, activation, output shape, parameters, totals."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from digitpipe.models.convnet import ACTIVATION_TYPES


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    activation: str
    output_shape: tuple[int, ...]
    params: int


def summarize(net: nn.Sequential, input_shape: tuple[int, ...]) -> list[LayerRow]:
    """One row per layer; an activation module is folded into the layer before it, as in Keras."""
    rows: list[LayerRow] = []
    x = torch.zeros(1, *input_shape, device=next(net.parameters()).device)  # wherever the net lives
    with torch.no_grad():
        for name, module in net.named_children():
            x = module(x)
            if isinstance(module, ACTIVATION_TYPES) and rows:
                prev = rows[-1]
                rows[-1] = LayerRow(
                    prev.name, prev.kind, type(module).__name__, prev.output_shape, prev.params
                )
                continue
            params = sum(p.numel() for p in module.parameters())
            rows.append(LayerRow(name, type(module).__name__, "", tuple(x.shape[1:]), params))
    return rows


def format_summary(rows: list[LayerRow], trainable: int, total: int) -> str:
    header = ("Layer (type)", "Activation", "Output Shape", "Param #")
    table = [header] + [
        (f"{r.name} ({r.kind})", r.activation, str((None, *r.output_shape)), f"{r.params:,}") for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(4)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    rule = "-" * len(line(header))
    body = [line(r) for r in table[1:]]
    footer = [
        f"Total params: {total:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {total - trainable:,}",
    ]
    return "\n".join([rule, line(header), rule.replace("-", "="), *body, rule, *footer, rule])


def model_summary(net: nn.Sequential, input_shape: tuple[int, ...]) -> str:
    total = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return format_summary(summarize(net, input_shape), trainable, total)
