"""The Deep kNN classifier as the ASK paper uses it (eq. 1).

At each selected layer the K nearest bank points vote; p_l^c(x) is the fraction of them with
label c, and the prediction is argmax_c sum_l p_l^c(x). A tie between classes goes to the class
of the nearest neighbour among the tied classes (rank by rank, the first attacked layer first at
equal rank), a rule that favours no class index; `tie_rate` says how often it decides.

Optionally calibrated as Papernot & McDaniel's DkNN ("Deep k-Nearest Neighbors: Towards Confident,
Interpretable and Robust Deep Learning", 2018): on a calibration set held out of training, the
nonconformity of input x with label j is alpha(x, j) = the number of neighbours, over all layers,
whose label is not j; the p-value of class j for a new input is the fraction of calibration inputs
whose alpha (with their true label) is at least the input's alpha(x, j); the calibrated prediction
is the class of largest p-value and its p-value is the credibility. The tables use the plain vote;
the credibility measures whether an attack also evades the DkNN's own detection.
"""
from __future__ import annotations

import numpy as np
import torch

from askknn.bank import FeatureBank
from askknn.shared import ParamError, knn_prediction


class DeepKNN:
    def __init__(self, bank: FeatureBank, layers, k: int = 5, metric: str = "cosine"):
        if not layers:
            raise ParamError("DeepKNN needs at least one layer")
        bank.check(layers, k, "dknn.k")
        self.bank, self.layers, self.k, self.metric = bank, list(layers), k, metric
        self.calibration: np.ndarray | None = None

    def nearest(self, features: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Squared distances and bank indices (B, K) of the K nearest bank points at each layer."""
        return {layer: self.bank.search(layer, self.metric, features[layer], self.k) for layer in self.layers}

    def labels_of(self, nearest: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
        """The labels (B, K) of `nearest`'s neighbours at each layer."""
        return {layer: self.bank.labels[idx] for layer, (_, idx) in nearest.items()}

    def neighbour_labels(self, features: dict) -> dict[str, np.ndarray]:
        """Labels (B, K) of the K nearest bank points at each layer."""
        return self.labels_of(self.nearest(features))

    def counts_of(self, labels: dict[str, np.ndarray]) -> np.ndarray:
        """Votes (B, C) summed over the layers, from each layer's neighbour labels. Every layer has
        the same K, so argmax_c sum_l p_l^c is argmax_c of the integer counts: exact ties stay exact
        (float fractions such as 1/5 + 2/5 and 0/5 + 3/5 differ in their last bit)."""
        classes = np.arange(self.bank.num_classes)
        return sum((lab[..., None] == classes).sum(axis=1) for lab in labels.values())

    def vote_counts(self, features: dict) -> np.ndarray:
        """Votes (B, C) summed over the layers (see `counts_of`)."""
        return self.counts_of(self.neighbour_labels(features))

    def votes(self, features: dict) -> tuple[np.ndarray, np.ndarray]:
        """(vote counts (B, C), predictions (B,)): argmax of the counts, ties broken by the nearest
        neighbour whose class is tied (neighbours ordered by rank, then by layer)."""
        return self.votes_of(self.neighbour_labels(features))

    def votes_of(self, labels: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """votes() from each layer's neighbour labels (B, K), nearest first, e.g. labels_of(nearest(...))
        for a caller that also uses the search's distances."""
        counts = self.counts_of(labels)
        by_rank = np.stack([labels[layer] for layer in self.layers], axis=2).reshape(len(counts), -1)
        return counts, knn_prediction(counts, by_rank)

    def class_scores(self, features: dict) -> np.ndarray:
        """sum_l p_l^c(x), shape (B, C)."""
        return self.vote_counts(features) / self.k

    def calibrate(self, features: dict, labels) -> "DeepKNN":
        """Store the calibration nonconformities alpha(x, y) of held-out inputs (features per layer)."""
        labels = np.asarray(labels)
        alpha = len(self.layers) * self.k - self.vote_counts(features)[np.arange(len(labels)), labels]
        self.calibration = np.sort(alpha)
        return self

    def p_values(self, counts: np.ndarray) -> np.ndarray:
        """Empirical p-values (B, C) of every class, from vote counts (B, C); needs `calibrate`."""
        if self.calibration is None:
            raise ParamError("this DkNN is not calibrated; call calibrate() with held-out features first")
        alpha = len(self.layers) * self.k - counts
        below = np.searchsorted(self.calibration, alpha, side="left")   # calibration alphas < alpha
        return (len(self.calibration) - below) / len(self.calibration)

    def credibility(self, counts: np.ndarray) -> np.ndarray:
        """The p-value of the calibrated prediction (the largest), per input."""
        return self.p_values(counts).max(axis=1)

    def predict_calibrated(self, features: dict) -> np.ndarray:
        """Papernot & McDaniel's prediction: the class of largest p-value (smallest class on ties)."""
        return self.p_values(self.vote_counts(features)).argmax(axis=1)

    def predict(self, features: dict) -> np.ndarray:
        return self.votes(features)[1]

    def predict_inputs(self, model, x: torch.Tensor) -> np.ndarray:
        """Predictions for float inputs in [0, 1] (e.g. adversarial examples)."""
        model.eval()
        with torch.no_grad():
            return self.predict(model.features(x, self.layers))


def tie_rate(counts: np.ndarray) -> float:
    """The fraction of inputs whose vote counts have more than one largest class."""
    return float(((counts == counts.max(axis=1, keepdims=True)).sum(axis=1) > 1).mean())


def accuracy(pred, labels) -> float:
    return float((np.asarray(pred) == np.asarray(labels)).mean())
