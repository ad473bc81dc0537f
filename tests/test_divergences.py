"""KL and MMD against closed forms, Monte Carlo estimates and known behaviour."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import kl_divergence

from mmbench.divergences import gaussian_kernel, gaussian_kl_per_dim, mmd, official_cmmd_kl
from mmbench.nn import diagonal_normal


def test_gaussian_kl_matches_univariate_closed_form():
    # KL[N(1, 0.5^2) || N(-1, 2^2)] = log(2/0.5) + (0.25 + 4) / (2 * 4) - 1/2
    expected = math.log(4.0) + (0.25 + 4.0) / 8.0 - 0.5
    got = gaussian_kl_per_dim(np.array(1.0), np.log(0.25), np.array(-1.0), np.log(4.0))
    assert got == pytest.approx(expected, rel=1e-12)


def test_gaussian_kl_matches_monte_carlo_and_torch():
    torch.manual_seed(0)
    mu_q, logvar_q = torch.tensor([0.3, -1.0, 2.0]), torch.tensor([-0.5, 0.2, 1.0])
    mu_p, logvar_p = torch.tensor([0.0, 0.5, 1.0]), torch.tensor([0.0, -0.3, 0.4])
    q, p = diagonal_normal(mu_q, logvar_q), diagonal_normal(mu_p, logvar_p)
    z = q.sample((400_000,))
    monte_carlo = (q.log_prob(z) - p.log_prob(z)).mean()
    closed = gaussian_kl_per_dim(mu_q, logvar_q, mu_p, logvar_p).sum()
    assert float(closed) == pytest.approx(float(monte_carlo), abs=0.01)
    assert float(closed) == pytest.approx(float(kl_divergence(q, p)), rel=1e-6)


def test_official_kl_is_half_the_dimension_when_distributions_are_equal():
    mean, logvar = torch.randn(4, 7), torch.randn(4, 7)
    q = diagonal_normal(mean, logvar)
    assert torch.allclose(official_cmmd_kl(q, q), torch.full((4,), 3.5))


def test_official_kl_differs_from_exact_kl_by_half_the_variance_ratio_minus_half():
    q = diagonal_normal(torch.tensor([[0.5, 1.0]]), torch.tensor([[0.3, -0.7]]))
    p = diagonal_normal(torch.tensor([[0.0, 0.2]]), torch.tensor([[-0.1, 0.4]]))
    ratio = torch.exp(torch.tensor([0.3 + 0.1, -0.7 - 0.4]))
    # official = exact + 0.5 * sum(var_q / var_p): the 1/2 is missing on that term only.
    expected = kl_divergence(q, p) + (0.5 * ratio).sum()
    assert torch.allclose(official_cmmd_kl(q, p), expected, atol=1e-6)


def test_mmd_is_near_zero_for_one_distribution_and_grows_with_a_mean_shift():
    torch.manual_seed(1)
    x = torch.randn(1000, 5)
    same = mmd(x, torch.randn(1000, 5), bandwidth=5.0)
    shifts = [mmd(x, torch.randn(1000, 5) + shift, bandwidth=5.0) for shift in (0.5, 1.0, 2.0)]
    assert abs(float(same)) < 0.01
    assert float(same) < float(shifts[0]) < float(shifts[1]) < float(shifts[2])


def test_mmd_matches_a_hand_computed_case():
    x = torch.tensor([[0.0], [1.0]])
    y = torch.tensor([[2.0]])
    k = lambda a, b: math.exp(-((a - b) ** 2) / 2.0)  # noqa: E731
    kxx = (k(0, 0) + k(0, 1) + k(1, 0) + k(1, 1)) / 4
    kxy = (k(0, 2) + k(1, 2)) / 2
    expected = kxx + 1.0 - 2 * kxy
    assert float(mmd(x, y, bandwidth=2.0)) == pytest.approx(expected, rel=1e-6)


def test_mmd_default_bandwidth_is_dimension_squared_and_gradient_is_finite():
    x = torch.randn(50, 4, requires_grad=True)
    y = torch.randn(50, 4)
    value = mmd(x, y)
    assert value.item() == pytest.approx(mmd(x, y, bandwidth=16.0).item())
    value.backward()
    assert torch.isfinite(x.grad).all()


def test_mmd_matches_the_pairwise_definition_on_random_samples():
    torch.manual_seed(2)
    x = torch.randn(30, 6, dtype=torch.float64)
    y = torch.randn(20, 6, dtype=torch.float64) + 0.3

    def kernel(a, b):  # exp(-||a_i - b_j||^2 / bandwidth), pair by pair
        return torch.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / 9.0)

    expected = kernel(x, x).mean() + kernel(y, y).mean() - 2 * kernel(x, y).mean()
    torch.testing.assert_close(gaussian_kernel(x, y, 9.0), kernel(x, y), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(mmd(x, y, bandwidth=9.0), expected, rtol=1e-10, atol=1e-14)
