"""The deployable model: raw pixels in, class probabilities out, preprocessing included."""

from __future__ import annotations

import torch
from torch import nn

from digitpipe.models.classifier import DigitClassifier


class DigitPredictor(nn.Module):
    """(N, 28, 28) float pixels in 0..255, white digit on black, -> (N, classes) probabilities.

    Scaling (and the training set's normalisation, if it was used) is inside, so whoever loads the
    model from MLflow needs neither this project's code nor its data statistics.
    """

    def __init__(self, net: nn.Module, mean: float | None, std: float | None) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(0.0 if mean is None else mean))
        self.register_buffer("std", torch.tensor(1.0 if std is None else std))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels.unsqueeze(1) / 255.0 - self.mean) / self.std
        return torch.softmax(self.net(x), dim=1)


def predictor_from_checkpoint(path: str, mean: float | None, std: float | None) -> DigitPredictor:
    classifier = DigitClassifier.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    return DigitPredictor(classifier.net, mean, std).eval()
