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
from torch.distributions import (
    Bernoulli,
    Categorical,
    Distribution,
    Independent,
    Laplace,
    Normal,
    register_kl,
)
from torch.distributions.utils import lazy_property

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


LOG_2PI = math.log(2 * math.pi)


class Factorized(Independent):
    """``Independent`` over the last dimension whose log-density is its base's
    ``log_prob_sum(value)`` when the base has one: the sum taken first, so that the terms that
    are constant along the last dimension are added once per point rather than per element."""

    def __init__(self, base: Distribution):
        super().__init__(base, 1, validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        summed = getattr(self.base_dist, "log_prob_sum", None)
        return super().log_prob(value) if summed is None else summed(value)


class DiagonalNormal(Normal):
    """N(loc, exp(logvar)) per element, held by its log-variance.

    ``logvar`` may be smaller than ``loc`` and broadcast to it (one variance per feature): the
    exponentials are then taken once per feature, not once per element. The log-density is one
    expression of the log-variance, -(x - loc)^2 exp(-logvar) / 2 - logvar / 2 - log(2 pi) / 2,
    where ``Normal``'s takes the scale's square and log per element; ``scale`` is computed only
    when asked for (sampling). Not validated, as :func:`diagonal_normal` explains.
    """

    def __init__(self, loc: torch.Tensor, logvar: torch.Tensor):
        self.loc, self.logvar = loc, logvar
        Distribution.__init__(
            self, torch.broadcast_shapes(loc.shape, logvar.shape), validate_args=False
        )

    @lazy_property
    def scale(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar).expand(self.batch_shape)

    @lazy_property
    def precision(self) -> torch.Tensor:
        """exp(-logvar), of the shape of ``logvar``."""
        return torch.exp(-self.logvar)

    @property
    def variance(self) -> torch.Tensor:
        return torch.exp(self.logvar).expand(self.batch_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        diff = value - self.loc
        return -0.5 * (diff * diff * self.precision + (self.logvar + LOG_2PI))

    def log_prob_sum(self, value: torch.Tensor) -> torch.Tensor:
        """The log-density summed over the last dimension (see :class:`Factorized`)."""
        diff = value - self.loc
        quadratic = (diff * diff * self.precision).sum(-1)
        features = self.batch_shape[-1]
        if self.logvar.ndim == 0:  # one variance for every element
            normaliser = features * (self.logvar + LOG_2PI)
        else:
            normaliser = self.logvar.sum(-1)
            if self.logvar.shape[-1] != features:  # broadcast along the features
                normaliser = normaliser * features
            normaliser = normaliser + features * LOG_2PI
        return -0.5 * (quadratic + normaliser)


@register_kl(DiagonalNormal, DiagonalNormal)
def _kl_diagonal_normal(q: DiagonalNormal, p: DiagonalNormal) -> torch.Tensor:
    """KL[q || p] per element: (exp(lq - lp) + (mq - mp)^2 exp(-lp) - 1 - (lq - lp)) / 2."""
    log_ratio = q.logvar - p.logvar
    diff = q.loc - p.loc
    return 0.5 * (torch.exp(log_ratio) + diff * diff * p.precision - 1.0 - log_ratio)


class StandardNormal(DiagonalNormal):
    """N(0, 1) per element, of the shape of ``like``: its zero mean and log-variance are one
    stored zero, and its log-density and KL drop the terms that vanish."""

    def __init__(self, like: torch.Tensor):
        zero = like.new_zeros(())
        super().__init__(zero.expand(like.shape), zero)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return -0.5 * (value * value + LOG_2PI)

    def log_prob_sum(self, value: torch.Tensor) -> torch.Tensor:
        return -0.5 * ((value * value).sum(-1) + self.batch_shape[-1] * LOG_2PI)


@register_kl(DiagonalNormal, StandardNormal)
def _kl_standard_normal(q: DiagonalNormal, p: StandardNormal) -> torch.Tensor:
    """KL[q || N(0, 1)] per element: (exp(lq) - lq + mq^2 - 1) / 2."""
    return 0.5 * (torch.exp(q.logvar) - q.logvar + q.loc * q.loc - 1.0)


def diagonal_normal(mean: torch.Tensor, logvar: torch.Tensor) -> Independent:
    """N(mean, diag(exp(logvar))) over the last dimension (a :class:`DiagonalNormal`);
    ``logvar`` may broadcast to ``mean`` (e.g. one per feature).

    Its arguments are valid by construction, so they are not validated: validation costs passes
    over the data, a host sync per check on a GPU, and turns a diverged network's NaN into an
    exception before the trainer can report the divergence.
    """
    return Factorized(DiagonalNormal(mean, logvar))


def standard_normal_like(mean: torch.Tensor) -> Independent:
    """N(0, I) over the last dimension, of the shape of ``mean`` (a :class:`StandardNormal`)."""
    return Factorized(StandardNormal(mean))


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
        mean, logvar = self._params(h)
        return mean, logvar.expand_as(mean)

    def _params(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar): logvar (batch, out_dim) for "input", else (out_dim,)."""
        mean = self.mean(h)
        if self.learned_variance == "input":
            assert isinstance(self.logvar, nn.Linear)
            return mean, self.logvar(h)
        if self.learned_variance == "shared":
            assert isinstance(self.logvar, nn.Parameter)
            return mean, self.logvar
        return mean, self.fixed_logvar

    def forward(self, h: torch.Tensor) -> Independent:
        # The per-feature log-variance is not expanded: its exponential is taken once per feature.
        return diagonal_normal(*self._params(h))


class LogitBernoulli(Bernoulli):
    """Bernoulli(sigmoid(logits)) whose log-density summed over the last dimension is
    sum(x * logits - softplus(logits)) (see :class:`Factorized`): minus the binary
    cross-entropy, for x in [0, 1] too, in fewer passes than ``Bernoulli.log_prob``."""

    def __init__(self, logits: torch.Tensor):
        super().__init__(logits=logits, validate_args=False)

    def log_prob_sum(self, value: torch.Tensor) -> torch.Tensor:
        logits = self.logits
        return (value * logits - nn.functional.softplus(logits)).sum(-1)


class BernoulliHead(nn.Module):
    """Features -> independent Bernoulli(sigmoid(logits)) over the last dimension.

    Values in [0, 1] (grey pixels, not only {0, 1}) are accepted: their log-probability is the
    binary cross-entropy, the papers' likelihood for MNIST-like data.
    """

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.logits = nn.Linear(in_dim, out_dim)

    def forward(self, h: torch.Tensor) -> Independent:
        return Factorized(LogitBernoulli(self.logits(h)))


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
            return Factorized(LogitBernoulli(logits))
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

    def log_prob_sum(self, value: torch.Tensor) -> torch.Tensor:
        """The log-density summed over the last dimension (see :class:`Factorized`): the scaling
        and the constant applied to the sum, one pass fewer each."""
        features = self.batch_shape[-1]
        distance = (value - self.loc).abs().sum(-1)
        return distance * (-1 / self.fixed_scale) - features * math.log(2 * self.fixed_scale)


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
            # hardtanh is clamp with a one-kernel backward (clamp's takes four passes); the
            # gradients differ only at values exactly on a bound.
            mean = nn.functional.hardtanh(torch.sigmoid(mean), SCALE_FLOOR, 1 - SCALE_FLOOR)
        return Factorized(FixedScaleLaplace(mean, self.scale))


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
    """(mean, logvar), each of its batch shape, of a diagonal Gaussian made by
    :func:`diagonal_normal`."""
    base = stats_of.base_dist
    assert isinstance(base, DiagonalNormal)
    return base.loc, base.logvar.expand(base.batch_shape)


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
