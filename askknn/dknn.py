"""The Deep kNN classifier as the ASK paper uses it (eq. 1).

At each selected layer the K nearest bank points vote; p_l^c(x) is the fraction of them with
label c, and the prediction is argmax_c sum_l p_l^c(x). Ties go to the smallest class index.
"""
from __future__ import annotations

import numpy as np
import torch

from askknn.bank import FeatureBank
from askknn.params import ParamError


class DeepKNN:
    def __init__(self, bank: FeatureBank, layers, k: int = 5, metric: str = "cosine"):
        if not layers:
            raise ParamError("DeepKNN needs at least one layer")
        bank.check(layers, k, "dknn.k")
        self.bank, self.layers, self.k, self.metric = bank, list(layers), k, metric

    def neighbour_labels(self, features: dict) -> dict[str, np.ndarray]:
        """Labels (B, K) of the K nearest bank points at each layer."""
        return {layer: self.bank.labels[self.bank.search(layer, self.metric, features[layer], self.k)[1]]
                for layer in self.layers}

    def vote_counts(self, features: dict) -> np.ndarray:
        """Votes (B, C) summed over the layers. Every layer has the same K, so argmax_c sum_l p_l^c
        is argmax_c of the integer counts: exact ties stay exact (float fractions such as
        1/5 + 2/5 and 0/5 + 3/5 differ in their last bit)."""
        classes = np.arange(self.bank.num_classes)
        return sum((labels[..., None] == classes).sum(axis=1) for labels in self.neighbour_labels(features).values())

    def class_scores(self, features: dict) -> np.ndarray:
        """sum_l p_l^c(x), shape (B, C)."""
        return self.vote_counts(features) / self.k

    def predict(self, features: dict) -> np.ndarray:
        return self.vote_counts(features).argmax(axis=1)  # argmax keeps the first: smallest class on ties

    def predict_inputs(self, model, x: torch.Tensor) -> np.ndarray:
        """Predictions for float inputs in [0, 1] (e.g. adversarial examples)."""
        model.eval()
        with torch.no_grad():
            return self.predict(model.features(x, self.layers))


def accuracy(pred, labels) -> float:
    return float((np.asarray(pred) == np.asarray(labels)).mean())
