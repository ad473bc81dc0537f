"""Building blocks: dropout's mask and scaling, heads that let a diverged network's NaN reach
the loss (where the trainer reports it) instead of raising in a distribution's validation, the
decoder log-variances the collapse analysis reads, and mirrored decoder layers."""

import math
import typing

import pytest
import torch

from mmbench.config import Activation
from mmbench.nn import (
    ACTIVATIONS,
    CategoricalHead,
    Dropout,
    GaussianHead,
    decoder_layers,
    diagonal_normal,
    gaussian_logvars,
)


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_zeroes_a_fraction_p_and_rescales_the_rest(p):
    torch.manual_seed(0)
    x = torch.ones(200, 500, requires_grad=True)
    dropout = Dropout(p).train()
    y = dropout(x)
    zeroed = (y == 0).float().mean().item()
    assert zeroed == pytest.approx(p, abs=5 * math.sqrt(p * (1 - p) / y.numel()))
    assert torch.allclose(y[y != 0], torch.tensor(1 / (1 - p)))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient goes through the same mask
    assert torch.equal(dropout.eval()(x), x)


def test_dropout_of_zero_and_one_is_the_identity_and_zero():
    x = torch.randn(4, 3)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))


def test_heads_carry_nan_to_the_log_probability():
    nan = torch.full((2, 3), math.nan)
    assert torch.isnan(diagonal_normal(nan, nan).log_prob(torch.zeros(2, 3))).all()
    head = CategoricalHead(3, 4)
    with torch.no_grad():
        head.logits.weight.fill_(math.nan)
    assert torch.isnan(head(torch.ones(2, 3)).log_prob(torch.tensor([0, 3]))).all()


def test_every_declared_activation_has_a_module():
    assert set(ACTIVATIONS) == set(typing.get_args(Activation))


def test_decoder_log_variances_are_the_gaussian_heads_side_by_side():
    torch.manual_seed(0)
    h = torch.randn(4, 3)
    heads = {"a": GaussianHead(3, 2, "input"), "b": GaussianHead(3, 5, 0.25)}
    decoded = {m: head(h) for m, head in heads.items()}
    logvars = gaussian_logvars(decoded, ["a", "b"])
    assert logvars.shape == (4, 7)
    assert torch.allclose(logvars[:, :2], heads["a"].logvar(h), atol=1e-6)
    assert torch.allclose(logvars[:, 2:], torch.full((4, 5), math.log(0.25)))
    assert gaussian_logvars(decoded, []) is None


def test_a_decoder_mirrors_the_encoder_unless_given_its_own_layers():
    assert decoder_layers((512, 256, 64), None) == (64, 256, 512)
    assert decoder_layers((512, 256), (32,)) == (32,)


# mmbench's closed forms against torch.distributions' own, in float64 (the same values to
# rounding), with gradients: the log-densities and KL the losses are built from.
def test_diagonal_normal_log_density_and_kl_match_torch_normal():
    from torch.distributions import Independent, Normal, kl_divergence

    from mmbench.nn import diagonal_normal, standard_normal_like

    torch.manual_seed(0)
    mean = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    x = torch.randn(5, 7, dtype=torch.float64)
    for logvar in (
        torch.randn(5, 7, dtype=torch.float64),  # one per element
        torch.randn(7, dtype=torch.float64),  # one per feature, broadcast
        torch.randn(5, 1, dtype=torch.float64),  # one per point
        torch.tensor(0.3, dtype=torch.float64),  # one for all
    ):
        logvar.requires_grad_(True)
        ours = diagonal_normal(mean, logvar)
        theirs = Independent(Normal(mean, torch.exp(0.5 * logvar).expand(5, 7)), 1)
        for got, want in (
            (ours.log_prob(x), theirs.log_prob(x)),
            (ours.base_dist.log_prob(x), theirs.base_dist.log_prob(x)),
            (ours.base_dist.scale, theirs.base_dist.scale),
            (ours.variance, theirs.variance),
        ):
            assert got.shape == want.shape
            torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
            grads = torch.autograd.grad(
                got.sum(), (mean, logvar), allow_unused=True, retain_graph=True
            )
            expected = torch.autograd.grad(
                want.sum(), (mean, logvar), allow_unused=True, retain_graph=True
            )
            for g, e in zip(grads, expected):
                assert (g is None) == (e is None)
                if g is not None:
                    torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)
    q_mean, q_logvar, p_mean = torch.randn(3, 5, 7, dtype=torch.float64)
    p_logvar = torch.randn(7, dtype=torch.float64)

    def torch_normal(m, lv):
        return Independent(Normal(m, torch.exp(0.5 * lv).expand(5, 7)), 1)

    torch.testing.assert_close(
        kl_divergence(diagonal_normal(q_mean, q_logvar), diagonal_normal(p_mean, p_logvar)),
        kl_divergence(torch_normal(q_mean, q_logvar), torch_normal(p_mean, p_logvar)),
        rtol=1e-10,
        atol=1e-12,
    )
    torch.testing.assert_close(
        kl_divergence(diagonal_normal(q_mean, q_logvar), standard_normal_like(q_mean)),
        kl_divergence(torch_normal(q_mean, q_logvar), torch_normal(0 * q_mean, 0 * q_logvar)),
        rtol=1e-10,
        atol=1e-12,
    )


def test_summed_laplace_and_bernoulli_log_densities_match_torch():
    from torch.distributions import Bernoulli, Independent, Laplace

    from mmbench.nn import Factorized, FixedScaleLaplace, LogitBernoulli

    torch.manual_seed(0)
    loc = torch.randn(3, 4, 9, dtype=torch.float64)
    x = torch.randn(3, 4, 9, dtype=torch.float64)
    torch.testing.assert_close(
        Factorized(FixedScaleLaplace(loc, 0.75)).log_prob(x),
        Independent(Laplace(loc, torch.full_like(loc, 0.75)), 1).log_prob(x),
        rtol=1e-12,
        atol=0,
    )
    logits = 8 * torch.randn(4, 9, dtype=torch.float64)  # large ones: softplus's linear range
    grey = torch.rand(4, 9, dtype=torch.float64)
    binary = grey.round()
    for value in (grey, binary):
        torch.testing.assert_close(
            Factorized(LogitBernoulli(logits)).log_prob(value),
            Independent(Bernoulli(logits=logits, validate_args=False), 1).log_prob(value),
            rtol=1e-12,
            atol=1e-12,
        )


def test_standard_normal_like_is_torch_standard_normal():
    from torch.distributions import Independent, Normal

    from mmbench.nn import standard_normal_like

    torch.manual_seed(0)
    x = torch.randn(4, 6, dtype=torch.float64)
    ours = standard_normal_like(x)
    theirs = Independent(Normal(torch.zeros_like(x), torch.ones_like(x)), 1)
    assert ours.batch_shape == theirs.batch_shape and ours.event_shape == theirs.event_shape
    torch.testing.assert_close(ours.log_prob(x), theirs.log_prob(x), rtol=1e-12, atol=0)
    torch.testing.assert_close(
        ours.base_dist.log_prob(x), theirs.base_dist.log_prob(x), rtol=1e-12, atol=0
    )
    torch.manual_seed(1)
    sample = ours.rsample()
    torch.manual_seed(1)
    torch.testing.assert_close(sample, theirs.rsample(), rtol=0, atol=0)


def test_laplace_likelihood_mean_is_the_clamped_sigmoid_with_its_gradient():
    from mmbench.nn import SCALE_FLOOR, LaplaceLikelihood

    torch.manual_seed(0)
    head = LaplaceLikelihood(5, 40, 0.75, unit_interval=True)
    with torch.no_grad():
        head.mean.weight.mul_(20)  # logits up to ~+-30: both bounds are reached
    h = torch.randn(8, 5)
    x = torch.rand(8, 40)
    logits = head.mean(h)
    reference = torch.sigmoid(logits).clamp(SCALE_FLOOR, 1 - SCALE_FLOOR)
    clamped = (reference == SCALE_FLOOR) | (reference == 1 - SCALE_FLOOR)
    assert clamped.any() and not clamped.all()
    mean = head(h).base_dist.loc
    assert torch.equal(mean, reference)
    (grad,) = torch.autograd.grad(mean.mul(x).sum(), head.mean.weight)
    (expected,) = torch.autograd.grad(reference.mul(x).sum(), head.mean.weight)
    torch.testing.assert_close(grad, expected, rtol=1e-6, atol=1e-7)
