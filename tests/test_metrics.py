"""Metrics against hand-computed cases and a reference library."""

import numpy as np
import pytest

from mmbench.metrics import (
    collapse_curve,
    collapsed_dimensions,
    error_pct,
    kl_between,
    kl_to_standard_normal,
    map_pct,
    rmse,
)
from mmbench.stats import GaussianStats


def test_error_pct_counts_wrong_argmax():
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    assert error_pct(np.array([0, 1, 1, 0]), scores) == 50.0


def test_rmse_is_root_of_mean_over_all_elements():
    truth = np.zeros((2, 2))
    generated = np.array([[1.0, 1.0], [1.0, 3.0]])
    assert rmse(truth, generated) == pytest.approx(np.sqrt((1 + 1 + 1 + 9) / 4))
    with pytest.raises(ValueError, match="shape"):
        rmse(truth, generated[:1])


def test_map_micro_and_macro_on_a_hand_computed_case():
    labels = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    scores = np.array([[0.9, 0.2], [0.8, 0.7], [0.3, 0.6], [0.1, 0.5]])
    # label 0 ranking: 0.9(+) 0.8(-) 0.3(+) 0.1(-): AP = (1/1 + 2/3) / 2
    # label 1 ranking: 0.7(+) 0.6(+) 0.5(-) 0.2(-): AP = (1 + 1) / 2
    ap0, ap1 = (1 + 2 / 3) / 2, 1.0
    assert map_pct(labels, scores, "macro") == pytest.approx(100 * (ap0 + ap1) / 2)
    # micro pools all 8 pairs: 0.9+ 0.8- 0.7+ 0.6+ 0.5- 0.3+ 0.2- 0.1-
    micro = (1 / 1 + 2 / 3 + 3 / 4 + 4 / 6) / 4
    assert map_pct(labels, scores, "micro") == pytest.approx(100 * micro)


def test_collapse_curve_on_hand_built_gaussians():
    # 200 points, 3 dimensions: dim 0 equals the prior exactly (KL 0), dim 1 has mean 1 for
    # every point (KL 0.5), dim 2 has mean 3 for 198 points and 0 for 2 (KL 4.5 and 0).
    n = 200
    mean = np.zeros((n, 3))
    mean[:, 1] = 1.0
    mean[:198, 2] = 3.0
    stats = GaussianStats(mean, np.zeros((n, 3)))
    kl = kl_to_standard_normal(stats)
    eps = np.array([0.0, 0.4, 0.5, 4.0, 4.5, 6.0])
    # delta = 0.01: a dimension is collapsed when >= 198 of the 200 points have KL <= eps.
    expected = np.array([1, 1, 2, 2, 3, 3]) / 3
    assert np.allclose(collapse_curve(kl, eps, delta=0.01), expected)
    assert list(collapsed_dimensions(kl, 0.5)) == [0, 1]
    # with delta = 0.995 one point suffices: dim 2's two zero-KL points collapse it at eps 0.
    assert np.allclose(collapse_curve(kl, np.array([0.0]), delta=0.995), [2 / 3])


def test_kl_between_is_zero_for_identical_and_positive_otherwise():
    a = GaussianStats(np.array([[0.0, 1.0]]), np.array([[0.0, -1.0]]))
    b = GaussianStats(np.array([[0.0, 2.0]]), np.array([[0.0, -1.0]]))
    assert np.allclose(kl_between(a, a), 0.0)
    # dim 1: (1 - 2)^2 / (2 e^-1) = e / 2
    assert np.allclose(kl_between(a, b), [[0.0, np.e / 2]])


def test_kl_between_matches_torch_distributions():
    import torch
    from torch.distributions import Normal, kl_divergence

    rng = np.random.default_rng(0)
    q = GaussianStats(rng.normal(size=(5, 3)), rng.normal(size=(5, 3)))
    p = GaussianStats(rng.normal(size=(5, 3)), rng.normal(size=(5, 3)))

    def normal(stats):
        return Normal(torch.as_tensor(stats.mean), torch.as_tensor(np.exp(stats.logvar / 2)))

    expected = kl_divergence(normal(q), normal(p)).numpy()
    np.testing.assert_allclose(kl_between(q, p), expected, rtol=1e-10)
    zeros = np.zeros((5, 3))
    np.testing.assert_allclose(
        kl_to_standard_normal(q),
        kl_divergence(normal(q), normal(GaussianStats(zeros, zeros))),
        rtol=1e-10,
    )
