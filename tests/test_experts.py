"""Products and mixtures of experts against densities multiplied, summed and integrated
numerically with scipy."""

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.integrate import trapezoid

from mmbench.experts import mixture_log_prob, mixture_moments, product_of_experts

GRID = np.linspace(-12, 12, 48001)


def experts(n_experts=3, n=4, d=2, seed=0):
    rng = np.random.default_rng(seed)
    mean = rng.normal(scale=2.0, size=(n_experts, n, d))
    logvar = rng.uniform(-1.5, 1.5, size=(n_experts, n, d))
    return mean, logvar


def numerical_product(means, variances, prior=True):
    """Mean and variance of the normalised product of 1-D Gaussian densities on a grid."""
    density = np.ones_like(GRID)
    for mu, var in zip(means, variances):
        density = density * stats.norm.pdf(GRID, mu, np.sqrt(var))
    if prior:
        density = density * stats.norm.pdf(GRID)
    density /= trapezoid(density, GRID)
    mean = trapezoid(GRID * density, GRID)
    return mean, trapezoid((GRID - mean) ** 2 * density, GRID)


def test_product_of_experts_is_the_normalised_product_of_the_densities():
    mean, logvar = experts()
    joint_mean, joint_logvar = product_of_experts(torch.tensor(mean), torch.tensor(logvar))
    for i in range(mean.shape[1]):
        for j in range(mean.shape[2]):
            expected = numerical_product(mean[:, i, j], np.exp(logvar[:, i, j]))
            assert joint_mean[i, j].item() == pytest.approx(expected[0], abs=1e-6)
            assert np.exp(joint_logvar[i, j].item()) == pytest.approx(expected[1], rel=1e-5)


def test_without_the_prior_expert_the_product_of_one_expert_is_that_expert():
    mean, logvar = experts(n_experts=1)
    joint_mean, joint_logvar = product_of_experts(
        torch.tensor(mean), torch.tensor(logvar), prior_expert=False
    )
    assert np.allclose(joint_mean.numpy(), mean[0]) and np.allclose(joint_logvar.numpy(), logvar[0])
    expected = numerical_product(mean[:, 0, 0], np.exp(logvar[:, 0, 0]), prior=False)
    assert joint_mean[0, 0].item() == pytest.approx(expected[0], abs=1e-6)


def test_masking_an_expert_equals_dropping_it():
    mean, logvar = experts(n_experts=3)
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 0], [0, 0, 0]], dtype=torch.float64)
    masked_mean, masked_logvar = product_of_experts(torch.tensor(mean), torch.tensor(logvar), mask)
    assert masked_mean.shape == (4, *mean.shape[1:])
    for s, keep in enumerate(([0, 1, 2], [0, 2], [1])):
        dropped = product_of_experts(torch.tensor(mean[keep]), torch.tensor(logvar[keep]))
        assert torch.allclose(masked_mean[s], dropped[0])
        assert torch.allclose(masked_logvar[s], dropped[1])
    # No expert at all: the prior N(0, I) alone.
    assert torch.all(masked_mean[3] == 0) and torch.all(masked_logvar[3] == 0)


def test_product_of_experts_rejects_bad_shapes():
    mean, logvar = (torch.tensor(a) for a in experts(n_experts=3))
    with pytest.raises(ValueError, match="mask has shape"):
        product_of_experts(mean, logvar, torch.ones(2, 2))
    with pytest.raises(ValueError, match="differ"):
        product_of_experts(mean, logvar[:, :1])
    # an empty product without the prior expert has zero precision: not checked (no host read)
    empty_mean, empty_logvar = product_of_experts(
        mean, logvar, torch.zeros(1, 3), prior_expert=False
    )
    assert torch.isnan(empty_mean).all() and torch.isposinf(empty_logvar).all()


def test_mixture_log_density_matches_scipy():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(5, 3))
    loc = rng.normal(size=(4, 1, 3))
    scale = rng.uniform(0.3, 2.0, size=(4, 1, 3))
    # Four diagonal Laplace components, log-density of each z under each component: (4, 5).
    component = stats.laplace.logpdf(z[None], loc, scale).sum(-1)
    expected = np.log(np.mean(np.exp(component), axis=0))
    got = mixture_log_prob(torch.tensor(component), dim=0)
    assert np.allclose(got.numpy(), expected)
    # The components may lie along another axis.
    assert np.allclose(mixture_log_prob(torch.tensor(component.T), dim=1).numpy(), expected)


def test_mixture_moments_match_the_numerically_integrated_mixture():
    loc = np.array([-1.0, 0.5, 3.0])
    scale = np.array([0.4, 1.2, 0.7])  # Laplace scales: variance 2 b^2
    grid = np.linspace(-40, 40, 400001)
    density = np.mean([stats.laplace.pdf(grid, m, b) for m, b in zip(loc, scale)], axis=0)
    mean = trapezoid(grid * density, grid)
    variance = trapezoid((grid - mean) ** 2 * density, grid)
    got_mean, got_variance = mixture_moments(
        torch.tensor(loc)[:, None], torch.tensor(2 * scale**2)[:, None]
    )
    assert got_mean.item() == pytest.approx(mean, abs=1e-6)
    assert got_variance.item() == pytest.approx(variance, rel=1e-5)
