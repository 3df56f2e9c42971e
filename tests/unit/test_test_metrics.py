"""The evaluate stage's numbers from logits and labels, checked by hand on a tiny case."""

from __future__ import annotations

import math

import pytest
import torch

from digitpipe.evaluation.metrics import evaluate_logits


def one_hot_logits(predictions: list[int], num_classes: int = 3) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(predictions), num_classes).float() * 10


def test_accuracy_errors_per_class_and_confusion_by_hand():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    result = evaluate_logits(one_hot_logits([0, 1, 1, 1, 2, 0]), labels, num_classes=3)
    assert result.scalars["test/acc"] == pytest.approx(4 / 6) and result.scalars["test/errors"] == 2
    assert result.confusion.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]  # [true, predicted]
    precision, recall = [r["precision"] for r in result.per_class], [r["recall"] for r in result.per_class]
    assert precision == pytest.approx([0.5, 2 / 3, 1.0], abs=1e-6)
    assert recall == pytest.approx([0.5, 1.0, 0.5], abs=1e-6)
    f1 = [2 * p * r / (p + r) for p, r in zip(precision, recall, strict=True)]
    assert result.scalars["test/macro_f1"] == pytest.approx(sum(f1) / 3, abs=1e-5)
    assert [r["support"] for r in result.per_class] == [2, 2, 2] and [
        r["class"] for r in result.per_class
    ] == [0, 1, 2]


def test_the_loss_is_the_mean_cross_entropy():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    result = evaluate_logits(logits, torch.tensor([0, 0]), num_classes=2)
    expected = (-math.log(math.exp(2) / (math.exp(2) + 1)) - math.log(1 / (1 + math.e))) / 2
    assert result.scalars["test/loss"] == pytest.approx(expected, rel=1e-6)


def test_a_class_never_predicted_or_absent_scores_zero_not_nan():
    result = evaluate_logits(one_hot_logits([0, 0]), torch.tensor([0, 1]), num_classes=3)
    assert [r["precision"] for r in result.per_class] == [0.5, 0.0, 0.0]
    assert [r["support"] for r in result.per_class] == [1, 1, 0]
    assert not math.isnan(result.scalars["test/macro_f1"])
