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
from sklearn.base import ClassifierMixin
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


def make_classifier(
    kind: str, params: dict[str, Any], seed: int, shape: tuple[int, int]
) -> ClassifierMixin:
    """A classifier of ``kind`` with hyper-parameters ``params``, for training data of ``shape``
    (rows, features)."""
    if kind == "linear_svm":
        # liblinear's primal Newton solver, fast on narrow codes (sklearn's advice when rows
        # outnumber features), needs thousands of iterations on wide inputs such as 784
        # standardised pixels (5,000 at C = 1); its dual coordinate descent is several times
        # faster there. Codes narrower than a tenth of the rows keep the primal solver.
        rows, features = shape
        wide = features * 10 > rows
        return LinearSVC(dual=wide, max_iter=5000, random_state=seed, **params)
    if kind == "logistic":
        return LogisticRegression(max_iter=2000, **params)
    if kind == "mlp":
        params = dict(params, hidden_layer_sizes=tuple(params.get("hidden_layer_sizes", (256,))))
        return MLPClassifier(early_stopping=True, max_iter=200, random_state=seed, **params)
    raise ValueError(f"unknown downstream classifier {kind!r}; allowed: {sorted(DEFAULT_GRIDS)}")


def _scores(classifier: ClassifierMixin, features: np.ndarray) -> np.ndarray:
    """(n, K) scores whose argmax (single-label) or ranking (multi-label) is the prediction."""
    if hasattr(classifier, "decision_function"):
        scores = classifier.decision_function(features)
        return scores[:, None] if scores.ndim == 1 else scores
    return classifier.predict_proba(features)


@dataclass
class DownstreamResult:
    scores: np.ndarray | None  # (n_test, K) scores on the test representation (None: no test)
    params: dict[str, Any]  # the hyper-parameters chosen on the validation split
    valid_scores: np.ndarray  # (n_valid, K) the chosen classifier's scores on validation


def fit_downstream(
    kind: str,
    train: tuple[np.ndarray, np.ndarray],
    valid: tuple[np.ndarray, np.ndarray],
    test_features: np.ndarray | None,
    grid: dict[str, list] | None = None,
    seed: int = 0,
) -> DownstreamResult:
    """Train one classifier per grid point on ``train`` = (features, labels), keep the one with
    the best validation metric on ``valid``, and score ``test_features`` with it (None: no test
    scores, e.g. for a tuning trial, which never looks at the test split).

    Labels are class ids (n,) or multi-label indicators (n, L); multi-label uses one-vs-rest.
    """
    (z_train, y_train), (z_valid, y_valid) = train, valid
    multilabel = y_train.ndim == 2
    scaler = StandardScaler().fit(z_train)
    z_train, z_valid = scaler.transform(z_train), scaler.transform(z_valid)
    grid = grid or DEFAULT_GRIDS[kind]
    best: tuple[float, dict, Any, np.ndarray] | None = None
    for values in product(*grid.values()):
        params = dict(zip(grid, values))
        classifier = make_classifier(kind, params, seed, z_train.shape)
        if multilabel:
            classifier = OneVsRestClassifier(classifier)
        classifier.fit(z_train, y_train)
        scores = _scores(classifier, z_valid)
        if not multilabel:
            scores = _full(scores, classifier)
        # Lower is better for both: error %, and minus mAP %.
        loss = -map_pct(y_valid, scores) if multilabel else error_pct(y_valid, scores)
        if best is None or loss < best[0]:
            best = (loss, params, classifier, scores)
    assert best is not None  # the grid has at least one point
    _, params, classifier, valid_scores = best
    test_scores = None
    if test_features is not None:
        test_scores = _scores(classifier, scaler.transform(test_features))
        if not multilabel:
            test_scores = _full(test_scores, classifier)
    return DownstreamResult(test_scores, params, valid_scores)


def _full(scores: np.ndarray, classifier: ClassifierMixin) -> np.ndarray:
    """Scores over classes 0..max class id, so that argmax gives a class id even when the
    training split lacks a class (its column is -inf)."""
    classes = classifier.classes_
    if len(classes) == 2 and scores.shape[1] == 1:
        scores = np.hstack([-scores, scores])
    full = np.full((len(scores), int(classes.max()) + 1), -np.inf)
    full[:, classes] = scores
    return full
