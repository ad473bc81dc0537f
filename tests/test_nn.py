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
