"""The downstream protocol: a classifier trained on a model's representation of the observed
modalities, for models with no classifier of their own (Wang et al.'s linear SVM, logistic
regression, or an MLP). Hyper-parameters are chosen on the validation split only; features are
standardised with training statistics.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from mmbench.metrics import error_pct, map_pct

DEFAULT_GRIDS: dict[str, dict[str, list]] = {
    "linear_svm": {"C": [0.01, 0.1, 1.0, 10.0]},
    "logistic": {"C": [0.01, 0.1, 1.0, 10.0]},
    "mlp": {"hidden_layer_sizes": [[256], [512, 256]], "alpha": [1e-4, 1e-2]},
}


def make_classifier(kind: str, params: dict[str, Any], seed: int):
    if kind == "linear_svm":
        return LinearSVC(dual="auto", max_iter=5000, random_state=seed, **params)
    if kind == "logistic":
        return LogisticRegression(max_iter=2000, **params)
    if kind == "mlp":
        params = dict(params, hidden_layer_sizes=tuple(params.get("hidden_layer_sizes", (256,))))
        return MLPClassifier(early_stopping=True, max_iter=200, random_state=seed, **params)
    raise ValueError(f"unknown downstream classifier {kind!r}; allowed: {sorted(DEFAULT_GRIDS)}")


def _scores(classifier, features: np.ndarray) -> np.ndarray:
    """(n, K) scores whose argmax (single-label) or ranking (multi-label) is the prediction."""
    if hasattr(classifier, "decision_function"):
        scores = classifier.decision_function(features)
        return scores[:, None] if scores.ndim == 1 else scores
    return classifier.predict_proba(features)


@dataclass
class DownstreamResult:
    scores: np.ndarray          # (n_test, K) scores on the test representation
    params: dict[str, Any]      # the hyper-parameters chosen on the validation split


def fit_downstream(kind: str, train: tuple[np.ndarray, np.ndarray],
                   valid: tuple[np.ndarray, np.ndarray], test_features: np.ndarray,
                   grid: dict[str, list] | None = None, seed: int = 0) -> DownstreamResult:
    """Train one classifier per grid point on ``train`` = (features, labels), keep the one with
    the best validation metric on ``valid``, and score ``test_features`` with it.

    Labels are class ids (n,) or multi-label indicators (n, L); multi-label uses one-vs-rest.
    """
    (z_train, y_train), (z_valid, y_valid) = train, valid
    multilabel = y_train.ndim == 2
    scaler = StandardScaler().fit(z_train)
    z_train, z_valid, z_test = (scaler.transform(z) for z in (z_train, z_valid, test_features))
    grid = grid or DEFAULT_GRIDS[kind]
    best: tuple[float, dict, Any] | None = None
    for values in product(*grid.values()):
        params = dict(zip(grid, values))
        classifier = make_classifier(kind, params, seed)
        if multilabel:
            classifier = OneVsRestClassifier(classifier)
        classifier.fit(z_train, y_train)
        scores = _scores(classifier, z_valid)
        # Lower is better for both: error %, and minus mAP %.
        if multilabel:
            loss = -map_pct(y_valid, scores)
        else:
            loss = error_pct(y_valid, _full(scores, classifier))
        if best is None or loss < best[0]:
            best = (loss, params, classifier)
    _, params, classifier = best
    test_scores = _scores(classifier, z_test)
    if not multilabel:
        test_scores = _full(test_scores, classifier)
    return DownstreamResult(test_scores, params)


def _full(scores: np.ndarray, classifier) -> np.ndarray:
    """Scores over classes 0..max class id, so that argmax gives a class id even when the
    training split lacks a class (its column is -inf)."""
    classes = classifier.classes_
    if len(classes) == 2 and scores.shape[1] == 1:
        scores = np.hstack([-scores, scores])
    full = np.full((len(scores), int(classes.max()) + 1), -np.inf)
    full[:, classes] = scores
    return full
