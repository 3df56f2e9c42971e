"""The deployable model: raw pixels in, class probabilities out, preprocessing included."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from digitpipe.models.checkpoint import load_classifier


class DigitPredictor(nn.Module):
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


def predictor_from_checkpoint(path: str | Path) -> DigitPredictor:
    classifier = load_classifier(path)
    return DigitPredictor(classifier.standardize, classifier.net).eval()
