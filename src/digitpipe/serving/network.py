"""The network as it is used: raw pixels in, class probabilities out, preprocessing included."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from digitpipe.models.checkpoint import load_classifier


class PixelClassifier(nn.Module):
    """(N, 28, 28) float pixels in 0..255, white digit on black, -> (N, classes) probabilities.

    Scaling and the training set's standardisation (if it was used) are inside, so whoever loads
    the model from MLflow needs neither this project's code nor its data statistics.
    """

    def __init__(self, standardize: nn.Module, net: nn.Module) -> None:
        super().__init__()
        self.standardize, self.net = standardize, net

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.standardize(pixels.unsqueeze(1) / 255.0)
        return torch.softmax(self.net(x), dim=1)


def pixel_classifier_from_checkpoint(path: str | Path) -> PixelClassifier:
    classifier = load_classifier(path)
    return PixelClassifier(classifier.standardize, classifier.net).eval()


def top_digits(probabilities: torch.Tensor) -> list[tuple[int, float]]:
    """(digit, probability) per image: the most probable class and its probability."""
    best = probabilities.max(dim=1)
    return list(zip(best.indices.tolist(), best.values.tolist(), strict=True))
