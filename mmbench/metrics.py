"""Evaluation metrics: classification error, mAP, rmse of generations, posterior collapse."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score

from mmbench.stats import GaussianStats

DELTA = 0.01


def error_pct(labels: np.ndarray, scores: np.ndarray) -> float:
    """Percentage of points whose highest-scoring class (scores (n, K)) is not the label (n,)."""
    return 100.0 * float(np.mean(np.argmax(scores, axis=1) != labels))


def map_pct(labels: np.ndarray, scores: np.ndarray, average: str = "micro") -> float:
    """Mean average precision (%) of multi-label scores (n, L) against {0,1} labels (n, L).

    average="micro" pools every (point, label) pair (the official CMMD code); "macro" averages
    the per-label APs (the VCCA and DBM papers). Labels with no positive are left out of "macro".
    """
    if average == "macro":
        present = labels.sum(axis=0) > 0
        labels, scores = labels[:, present], scores[:, present]
    return 100.0 * float(average_precision_score(labels, scores, average=average))


def rmse(truth: np.ndarray, generated: np.ndarray) -> float:
    """sqrt of the mean squared error over all elements (n, d) (the official CMMD definition)."""
    if truth.shape != generated.shape:
        raise ValueError(f"rmse: truth has shape {truth.shape}, generation {generated.shape}")
    return float(np.sqrt(np.mean((truth.astype(np.float64) - generated) ** 2)))


def kl_between(q: GaussianStats, p: GaussianStats) -> np.ndarray:
    """KL[q || p] of diagonal Gaussians per point and dimension, (n, d), in nats:
    (var_q / var_p + (mean_q - mean_p)^2 / var_p - 1 - log(var_q / var_p)) / 2."""
    log_ratio = q.logvar - p.logvar
    mahalanobis = (q.mean - p.mean) ** 2 / np.exp(p.logvar)
    return 0.5 * (np.exp(log_ratio) + mahalanobis - 1.0 - log_ratio)


def kl_to_standard_normal(stats: GaussianStats) -> np.ndarray:
    """KL[N(mean, var) || N(0, 1)] per point and dimension, (n, d), in nats."""
    zeros = np.zeros_like(stats.mean)
    return kl_between(stats, GaussianStats(zeros, zeros))


def collapse_thresholds(values: np.ndarray, delta: float = DELTA) -> np.ndarray:
    """Per dimension, the smallest eps at which it counts as collapsed, (d,).

    values: (n, d) per-point, per-dimension quantities (KL in nats, or decoder variances).
    A dimension is collapsed at eps when the share of points with value <= eps is at least
    1 - delta (Lucas et al. 2019; paper App. E), i.e. when its ceil((1 - delta) n)-th smallest
    value is <= eps.
    """
    n = values.shape[0]
    rank = int(np.ceil((1.0 - delta) * n - 1e-9))  # points that must lie below eps
    return np.partition(values, rank - 1, axis=0)[rank - 1]


def collapse_curve(values: np.ndarray, eps: np.ndarray, delta: float = DELTA) -> np.ndarray:
    """Share of the d dimensions of ``values`` (n, d) collapsed at each eps, (len(eps),) in
    [0, 1]."""
    thresholds = collapse_thresholds(values, delta)
    return (thresholds[None, :] <= np.asarray(eps, dtype=np.float64)[:, None]).mean(axis=1)


def collapsed_dimensions(values: np.ndarray, eps: float, delta: float = DELTA) -> np.ndarray:
    """Indices of the dimensions of ``values`` (n, d) collapsed at ``eps``."""
    return np.flatnonzero(collapse_thresholds(values, delta) <= eps)
