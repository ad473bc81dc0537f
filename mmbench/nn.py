"""Network building blocks shared by every model: an MLP and distribution heads.

A head maps features to a ``torch.distributions`` object, so losses are written as
``dist.log_prob(x)`` and ``kl_divergence(q, p)`` instead of re-derived formulas. The Laplace
pieces are Shi et al.'s (MMVAE), shared by the models built on their recipe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol

import torch
from torch import nn
from torch.distributions import Bernoulli, Categorical, Distribution, Independent, Laplace, Normal

from mmbench.config import Activation

# One module per name of ``mmbench.config.Activation`` (a test checks that they agree).
ACTIVATIONS: dict[Activation, type[nn.Module]] = {
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; allowed: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose CPU keep-mask is drawn as ``uniform >= p``: the same Bernoulli(1 - p)
    mask at half the cost of the CPU's ``bernoulli_`` (both are single-threaded), which made
    dropout a tenth of a VCCA step. Other devices use torch's fused kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not 0 < self.p < 1 or x.device.type != "cpu":
            return super().forward(x)
        return x * torch.rand_like(x).ge_(self.p).div_(1 - self.p)


class MLP(nn.Sequential):
    """Linear -> activation -> dropout, once per hidden layer; ``out_dim`` = last hidden size.

    in_dim: input features. hidden: sizes of the hidden layers (may be empty: identity).
    """

    def __init__(
        self, in_dim: int, hidden: Sequence[int], act: str = "softplus", dropout: float = 0.0
    ):
        layers: list[nn.Module] = []
        width = in_dim
        for size in hidden:
            layers += [nn.Linear(width, size), activation(act)]
            if dropout > 0:
                layers.append(Dropout(dropout))
            width = size
        super().__init__(*layers)
        self.out_dim = width


def decoder_layers(hidden: Sequence[int], decoder_hidden: Sequence[int] | None) -> Sequence[int]:
    """A decoder's hidden layer sizes: ``decoder_hidden``, or, when it is None, the encoder's
    ``hidden`` in reverse (a mirrored autoencoder)."""
    return hidden[::-1] if decoder_hidden is None else decoder_hidden


def diagonal_normal(mean: torch.Tensor, logvar: torch.Tensor) -> Independent:
    """N(mean, diag(exp(logvar))) over the last dimension.

    Its arguments are valid by construction, so they are not validated: validation costs passes
    over the data, a host sync per check on a GPU, and turns a diverged network's NaN into an
    exception before the trainer can report the divergence.
    """
    return Independent(Normal(mean, torch.exp(0.5 * logvar), validate_args=False), 1)


def standard_normal_like(mean: torch.Tensor) -> Independent:
    return Independent(
        Normal(torch.zeros_like(mean), torch.ones_like(mean), validate_args=False), 1
    )


class GaussianHead(nn.Module):
    """Features -> N(mu, diag(sigma^2)) with linear mean and linear log-variance.

    With ``learned_variance="shared"`` the log-variance is one learned parameter per output
    dimension (independent of the input); with a float it is fixed to that variance.
    """

    logvar: nn.Linear | nn.Parameter  # "input": a linear map; "shared": a parameter
    fixed_logvar: torch.Tensor  # a buffer, for a fixed variance

    def __init__(self, in_dim: int, out_dim: int, learned_variance: str | float = "input"):
        super().__init__()
        self.mean = nn.Linear(in_dim, out_dim)
        self.learned_variance = learned_variance
        if learned_variance == "input":
            self.logvar = nn.Linear(in_dim, out_dim)
        elif learned_variance == "shared":
            self.logvar = nn.Parameter(torch.zeros(out_dim))
        elif isinstance(learned_variance, (int, float)) and learned_variance > 0:
            fixed = torch.full((out_dim,), float(learned_variance)).log()
            self.register_buffer("fixed_logvar", fixed)
        else:
            raise ValueError(
                f"learned_variance must be 'input', 'shared' or a positive variance, "
                f"got {learned_variance!r}"
            )

    def params(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar), each (batch, out_dim)."""
        mean = self.mean(h)
        if self.learned_variance == "input":
            assert isinstance(self.logvar, nn.Linear)
            logvar = self.logvar(h)
        elif self.learned_variance == "shared":
            assert isinstance(self.logvar, nn.Parameter)
            logvar = self.logvar.expand_as(mean)
        else:
            logvar = self.fixed_logvar.expand_as(mean)
        return mean, logvar

    def forward(self, h: torch.Tensor) -> Independent:
        return diagonal_normal(*self.params(h))


class BernoulliHead(nn.Module):
    """Features -> independent Bernoulli(sigmoid(logits)) over the last dimension.

    Values in [0, 1] (grey pixels, not only {0, 1}) are accepted: their log-probability is the
    binary cross-entropy, the papers' likelihood for MNIST-like data.
    """

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.logits = nn.Linear(in_dim, out_dim)

    def forward(self, h: torch.Tensor) -> Independent:
        return Independent(Bernoulli(logits=self.logits(h), validate_args=False), 1)


class CategoricalHead(nn.Module):
    """Features -> Categorical over ``n_classes`` (softmax), or independent Bernoullis over labels
    (sigmoid) when ``multilabel``."""

    def __init__(self, in_dim: int, n_classes: int, multilabel: bool = False):
        super().__init__()
        self.logits = nn.Linear(in_dim, n_classes)
        self.multilabel = multilabel

    def forward(self, h: torch.Tensor) -> Independent[Bernoulli] | Categorical:
        logits = self.logits(h)  # unvalidated, as in diagonal_normal
        if self.multilabel:
            return Independent(Bernoulli(logits=logits, validate_args=False), 1)
        return Categorical(logits=logits, validate_args=False)


def likelihood_head(
    likelihood: str, in_dim: int, out_dim: int, variance: str | float = "shared"
) -> nn.Module:
    """The decoder head for a modality's likelihood ("gaussian" or "bernoulli")."""
    if likelihood == "gaussian":
        return GaussianHead(in_dim, out_dim, variance)
    if likelihood == "bernoulli":
        return BernoulliHead(in_dim, out_dim)
    raise ValueError(f"unknown likelihood {likelihood!r}; allowed: 'gaussian', 'bernoulli'")


SCALE_FLOOR = 1e-6  # the authors' eta: added to posterior scales, clamps Laplace means in (0, 1)


def softmax_scale(raw: torch.Tensor) -> torch.Tensor:
    """The authors' positive scales: softmax over the D latent dimensions, times D."""
    return torch.softmax(raw, dim=-1) * raw.shape[-1]


def laplace(loc: torch.Tensor, scale: torch.Tensor) -> Independent:
    return Independent(Laplace(loc, scale, validate_args=False), 1)


class FixedScaleLaplace(Laplace):
    """Laplace(loc, s) with one scale s (a float) for every element.

    Its log-density -|x - loc| / s - log 2s takes two elementwise passes, where ``Laplace``
    with a tensor of scales takes a log and a division per element: on the decoders' K x M
    samples that was a quarter of an MMVAE-IWAE step.
    """

    def __init__(self, loc: torch.Tensor, scale: float):
        # A 0-d scale filled on the device (a Python float would be copied from the host),
        # broadcast to loc's shape without a copy.
        super().__init__(loc, loc.new_full((), scale), validate_args=False)
        self.fixed_scale = scale

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return (value - self.loc).abs() * (-1 / self.fixed_scale) - math.log(2 * self.fixed_scale)


class LaplaceExpert(nn.Module):
    """Features -> (loc, scale) of q(z | x_m): a linear loc, scale = softmax(linear) * D + eta."""

    def __init__(self, in_dim: int, latent_dim: int):
        super().__init__()
        self.loc = nn.Linear(in_dim, latent_dim)
        self.raw_scale = nn.Linear(in_dim, latent_dim)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loc(h), softmax_scale(self.raw_scale(h)) + SCALE_FLOOR


class LaplaceLikelihood(nn.Module):
    """Features -> Laplace(mean, fixed scale) per feature; the mean is a clamped sigmoid for data
    in [0, 1] (``unit_interval``), linear otherwise."""

    def __init__(self, in_dim: int, out_dim: int, scale: float, unit_interval: bool):
        super().__init__()
        self.mean = nn.Linear(in_dim, out_dim)
        self.scale, self.unit_interval = scale, unit_interval

    def forward(self, h: torch.Tensor) -> Independent:
        mean = self.mean(h)
        if self.unit_interval:
            mean = torch.sigmoid(mean).clamp(SCALE_FLOOR, 1 - SCALE_FLOOR)
        return Independent(FixedScaleLaplace(mean, self.scale), 1)


def fixed_scale_likelihood(
    family: str, likelihood: str, in_dim: int, out_dim: int, scale: float
) -> nn.Module:
    """The decoder head p(x_m | features) with one fixed scale, for a modality of ``likelihood``:
    family "laplace" (Shi et al.'s): Laplace(mean, ``scale``), the mean a clamped sigmoid for a
    "bernoulli" modality (data in [0, 1]) and linear otherwise; family "modality": the modality's
    own likelihood, a Gaussian with the fixed variance ``scale ** 2``."""
    if family == "laplace":
        return LaplaceLikelihood(in_dim, out_dim, scale, likelihood == "bernoulli")
    if family == "modality":
        return likelihood_head(likelihood, in_dim, out_dim, scale**2)
    raise ValueError(f"unknown likelihood family {family!r}; allowed: 'laplace', 'modality'")


def gaussian_posterior(stats_of: Independent) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, logvar) of a diagonal Gaussian made by :func:`diagonal_normal`."""
    return stats_of.base_dist.loc, 2 * stats_of.base_dist.scale.log()


def gaussian_logvars(
    decoded: Mapping[str, Independent], names: Sequence[str]
) -> torch.Tensor | None:
    """The log-variances of the diagonal Gaussians ``decoded[m]`` for the modalities ``names``,
    side by side: (b, sum of d_m); None when ``names`` is empty."""
    if not names:
        return None
    return torch.cat([gaussian_posterior(decoded[m])[1] for m in names], dim=1)


def log_variances(decoded: Mapping[str, Distribution], names: Sequence[str]) -> torch.Tensor | None:
    """The log-variances of the distributions ``decoded[m]`` of the modalities ``names`` (any
    family with a ``variance``: sigma^2 of a Gaussian, 2 b^2 of a Laplace), side by side:
    (b, sum of d_m); None when ``names`` is empty."""
    if not names:
        return None
    return torch.cat([decoded[m].variance.log() for m in names], dim=1)


class HeadFactory(Protocol):
    """Builds the head of a :func:`stochastic_mlp` for features of width ``in_dim``."""

    def __call__(self, in_dim: int, /) -> nn.Module: ...


def stochastic_mlp(
    in_dim: int,
    hidden: Sequence[int],
    head: HeadFactory,
    act: str = "softplus",
    dropout: float = 0.0,
) -> nn.Sequential:
    """An :class:`MLP` followed by ``head(features_dim)``; calling it returns what the head does
    (a distribution, or its parameters)."""
    body = MLP(in_dim, hidden, act, dropout)
    return nn.Sequential(body, head(body.out_dim))


def class_probabilities(dist: Independent[Bernoulli] | Categorical) -> torch.Tensor:
    """Probabilities of a :class:`CategoricalHead` output: (b, K) softmax or (b, L) sigmoids."""
    return dist.base_dist.probs if isinstance(dist, Independent) else dist.probs
