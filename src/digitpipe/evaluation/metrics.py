"""Test-set metrics from logits and labels (torchmetrics), pure and testable on tiny tensors."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)

from digitpipe.metric_names import TEST_ACC, TEST_ERRORS, TEST_LOSS, TEST_MACRO_F1


@dataclass(frozen=True)
class Evaluation:
    scalars: dict[str, float]  # "test/acc", "test/loss", ... as DVC metrics and MLflow metrics
    per_class: list[dict[str, float]]  # class, precision, recall, f1, support
    confusion: torch.Tensor  # [true, predicted] counts


def evaluate_logits(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> Evaluation:
    preds = logits.argmax(dim=1)
    per = {
        name: fn(preds, labels, num_classes, average="none", zero_division=0)
        for name, fn in (
            ("precision", multiclass_precision),
            ("recall", multiclass_recall),
            ("f1", multiclass_f1_score),
        )
    }
    support = torch.bincount(labels, minlength=num_classes)
    scalars = {
        TEST_ACC: multiclass_accuracy(preds, labels, num_classes, average="micro").item(),
        TEST_LOSS: F.cross_entropy(logits, labels).item(),
        TEST_MACRO_F1: per["f1"].mean().item(),
        TEST_ERRORS: int((preds != labels).sum()),
    }
    per_class = [
        {"class": c, **{k: round(v[c].item(), 6) for k, v in per.items()}, "support": int(support[c])}
        for c in range(num_classes)
    ]
    return Evaluation(scalars, per_class, multiclass_confusion_matrix(preds, labels, num_classes))


@torch.no_grad()
def predict_logits(model: torch.nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits for already-scaled images, in batches, in eval mode."""
    model.eval()
    return torch.cat([model(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
