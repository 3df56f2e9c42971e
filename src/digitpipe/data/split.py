"""Seeded, stratified train/validation split."""

from __future__ import annotations

import torch

from digitpipe.errors import ConfigError


def class_quotas(counts: torch.Tensor, total: int) -> torch.Tensor:
    """Split `total` over classes in proportion to `counts` (largest remainder, sums to total)."""
    exact = counts.double() * total / counts.sum()
    quotas = exact.floor().long()
    shortfall = total - int(quotas.sum())
    order = torch.argsort(exact - quotas, descending=True, stable=True)
    quotas[order[:shortfall]] += 1
    return quotas


def stratified_split(labels: torch.Tensor, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return sorted (train, val) index tensors; val keeps each class's share of `labels`."""
    if not 0 < val_size < len(labels):
        raise ConfigError(
            f"data.val_size={val_size} must be between 1 and {len(labels) - 1} "
            f"(the training set has {len(labels)} images)"
        )
    generator = torch.Generator().manual_seed(seed)
    classes, counts = labels.unique(return_counts=True)
    train_parts, val_parts = [], []
    for cls, quota in zip(classes, class_quotas(counts, val_size), strict=True):
        members = (labels == cls).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        val_parts.append(members[:quota])
        train_parts.append(members[quota:])
    return torch.cat(train_parts).sort().values, torch.cat(val_parts).sort().values
