"""ELBO, IWAE and DReG on a linear-Gaussian model whose marginal likelihood and posterior are known
in closed form (scipy), and the DReG gradient against the plain IWAE gradient."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import Independent, MultivariateNormal, Normal

from mmbench import bounds

F64 = torch.float64


class LinearGaussian:
    """z ~ N(0, I_2), x | z ~ N(W z + b, sigma^2 I_3), one observed x, and a proposal
    q(z) = N(m, diag(s^2)) that is deliberately not the posterior."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.W = rng.normal(size=(3, 2))
        self.b = rng.normal(size=3)
        self.sigma = 0.7
        self.x = rng.normal(size=3)
        precision = np.eye(2) + self.W.T @ self.W / self.sigma**2
        self.post_cov = np.linalg.inv(precision)
        self.post_mean = self.post_cov @ self.W.T @ (self.x - self.b) / self.sigma**2
        self.q_mean = self.post_mean + np.array([0.3, -0.2])
        self.q_scale = 1.3 * np.sqrt(np.diag(self.post_cov))

    def log_marginal(self) -> float:
        cov = self.W @ self.W.T + self.sigma**2 * np.eye(3)
        return stats.multivariate_normal(self.b, cov).logpdf(self.x)

    def kl_q_to_posterior(self) -> float:
        q = MultivariateNormal(torch.tensor(self.q_mean), torch.diag(torch.tensor(self.q_scale**2)))
        p = MultivariateNormal(torch.tensor(self.post_mean), torch.tensor(self.post_cov))
        return torch.distributions.kl_divergence(q, p).item()

    def log_weights(self, z, q_mean, q_log_scale, b=None):
        """log p(z) + log p(x | z) - log q(z) for samples z (..., 2)."""
        b = torch.tensor(self.b) if b is None else b
        prior = Independent(Normal(torch.zeros(2, dtype=F64), torch.ones(2, dtype=F64)), 1)
        likelihood = Independent(Normal(z @ torch.tensor(self.W).T + b, self.sigma), 1)
        q = Independent(Normal(q_mean, q_log_scale.exp()), 1)
        return prior.log_prob(z) + likelihood.log_prob(torch.tensor(self.x)) - q.log_prob(z)

    def sample(self, shape, generator):
        noise = torch.randn(*shape, 2, generator=generator, dtype=F64)
        return torch.tensor(self.q_mean) + torch.tensor(self.q_scale) * noise


@pytest.fixture(scope="module")
def model():
    return LinearGaussian()


def test_iwae_is_at_least_the_elbo_on_the_same_samples():
    log_w = torch.randn(10, 50, generator=torch.Generator().manual_seed(0), dtype=F64) * 3
    assert torch.all(bounds.iwae(log_w, dim=0) >= bounds.elbo(log_w, dim=0))
    constant = torch.full((7, 3), -2.5, dtype=F64)
    assert torch.allclose(bounds.iwae(constant), bounds.elbo(constant))
    # Samples along several axes are pooled.
    grid = log_w.reshape(5, 2, 50)
    assert torch.allclose(bounds.iwae(grid, dim=(0, 1)), bounds.iwae(log_w, dim=0))
    assert torch.allclose(bounds.elbo(grid, dim=(0, 1)), bounds.elbo(log_w, dim=0))


def test_elbo_equals_log_marginal_minus_kl_to_the_true_posterior(model):
    generator = torch.Generator().manual_seed(1)
    z = model.sample((20000,), generator)
    log_w = model.log_weights(z, torch.tensor(model.q_mean), torch.tensor(np.log(model.q_scale)))
    expected = model.log_marginal() - model.kl_q_to_posterior()
    standard_error = log_w.std().item() / math.sqrt(len(log_w))
    assert bounds.elbo(log_w).item() == pytest.approx(expected, abs=4 * standard_error)


def test_iwae_approaches_the_log_marginal_as_k_grows(model):
    generator = torch.Generator().manual_seed(2)
    log_p = model.log_marginal()
    gaps, errors = [], []
    for k in (1, 3, 10, 1000):
        repeats = 200_000 // k
        z = model.sample((k, repeats), generator)
        log_w = model.log_weights(
            z, torch.tensor(model.q_mean), torch.tensor(np.log(model.q_scale))
        )
        estimates = bounds.iwae(log_w, dim=0)
        gaps.append(log_p - estimates.mean().item())
        errors.append(estimates.std().item() / math.sqrt(repeats))
    # The gap at K = 1 is the KL to the posterior (0.35 nats here); it shrinks with K (as
    # chi^2(p(z|x) || q) / 2K asymptotically, 2e-4 at K = 1000), so that at K = 1000 it is
    # zero within a Monte Carlo error that is itself under 1% of the K = 1 gap.
    assert gaps[0] == pytest.approx(model.kl_q_to_posterior(), abs=4 * errors[0])
    for k in range(3):
        assert gaps[k] - gaps[k + 1] > 4 * math.hypot(errors[k], errors[k + 1])
    assert abs(gaps[-1]) < 4 * errors[-1] < 0.02 * gaps[0]


def test_dreg_value_is_the_iwae_bound():
    log_w = torch.randn(10, 4, generator=torch.Generator().manual_seed(3), dtype=F64)
    z = torch.randn(10, 4, 2, dtype=F64)
    assert torch.allclose(bounds.dreg_iwae(log_w, z), bounds.iwae(log_w))


def test_dreg_and_iwae_gradients_agree_in_expectation(model):
    """The DReG estimator of the proposal's gradient is unbiased for the IWAE gradient, with a
    lower variance; the decoder's gradient is the IWAE one, draw by draw."""
    k, replicas, groups = 10, 25, 400
    generator = torch.Generator().manual_seed(4)
    q_mean = torch.tensor(model.q_mean, requires_grad=True)
    q_log_scale = torch.tensor(np.log(model.q_scale), requires_grad=True)
    b = torch.tensor(model.b, requires_grad=True)
    parameters = (q_mean, q_log_scale, b)

    def gradient(dreg: bool, noise) -> torch.Tensor:
        z = q_mean + q_log_scale.exp() * noise  # (k, replicas, 2)
        if dreg:
            log_w = model.log_weights(z, q_mean.detach(), q_log_scale.detach(), b)
            bound = bounds.dreg_iwae(log_w, z, dim=0)
        else:
            bound = bounds.iwae(model.log_weights(z, q_mean, q_log_scale, b), dim=0)
        grads = torch.autograd.grad(bound.mean(), parameters)
        return torch.cat(grads)

    draws = []
    for _ in range(groups):
        noise = torch.randn(k, replicas, 2, generator=generator, dtype=F64)
        draws.append(torch.stack([gradient(True, noise), gradient(False, noise)]))
    draws = torch.stack(draws)  # (groups, 2, 7)
    dreg, iwae = draws[:, 0], draws[:, 1]
    # Decoder (b): identical on every draw.
    assert torch.allclose(dreg[:, 4:], iwae[:, 4:])
    # Proposal (q_mean, q_log_scale): same mean; the test statistic of the paired difference.
    difference = dreg[:, :4] - iwae[:, :4]
    standard_error = difference.std(0) / math.sqrt(groups)
    assert torch.all(standard_error > 0)
    assert torch.all(difference.mean(0).abs() < 4 * standard_error), (
        difference.mean(0),
        standard_error,
    )
    assert torch.all(dreg[:, :4].var(0) < iwae[:, :4].var(0))
