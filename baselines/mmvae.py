"""Mixture-of-experts multimodal VAE, MMVAE (Shi, Siddharth, Paige & Torr 2019).

Every modality m has an encoder q(z | x_m) = Laplace(loc_m, b_m), with b = softmax(raw) * D + 1e-6
over the D latent dimensions, and a decoder p(x_m | z). The prior is Laplace(0, softmax(r) * D)
with a learnable r (``learn_prior``). The joint posterior is the mixture
q(z | x) = (1/M) sum_m q(z | x_m), sampled with stratification: K samples from every expert,
drawn in one reparameterised call. The log-weight of a sample z is

    log w = log p(z) + sum_d lambda_d log p(x_d | z) - log (1/M) sum_m q(z | x_m)

and each decoder runs once on all M*K samples of a batch. Objectives (maximised; the loss is
minus their batch mean):

    "elbo"  mean of log w over the M*K samples: the stratified ELBO of the paper's Eq. 3 with the
            mixture density in log w (the authors' code optimises instead the looser average
            of the per-expert ELBOs with KL[q(z|x_m) || p(z)]);
    "iwae"  log (1/MK) sum w over the M*K samples (Burda et al.'s bound, stratified);
    "dreg"  the same bound with DReG gradients (Tucker et al. 2019): the experts' parameters are
            detached in log q and the gradients through the samples are weighted by the squared
            normalised weights (:func:`mmbench.bounds.dreg_iwae`). For a mixture sampled with
            stratification this is the authors' estimator, not an exactly unbiased one.
    ``looser=True`` (iwae, dreg): the mean over m of the bound over the K samples of expert m
    (the authors' ``--looser``).

Likelihoods (``likelihood``): "laplace" is the authors': Laplace(mean, ``likelihood_scale``) for
every modality, with the mean squashed into [1e-6, 1 - 1e-6] by a sigmoid for modalities in
[0, 1] (``Modality.likelihood == "bernoulli"``) and linear otherwise. "modality" uses each
modality's own family: Bernoulli, or Gaussian with the fixed standard deviation
``likelihood_scale``.

Test time (no classifier of its own; scored by the suite's downstream protocol):
- ``represent(xO)``: the mean of the observed experts' mixture (the average of their locs);
- ``generate(xO)``: the decoders' means at that point;
- ``posteriors``: the collapse analysis needs Gaussians: each Laplace(loc, b) is replaced by its
  moment-matched Gaussian (mean loc, variance 2 b^2) and a mixture by the Gaussian with the
  mixture's mean and variance (:func:`mmbench.experts.mixture_moments`). z|xO is the mixture of
  the observed experts; z|xM is, by default, the mixture of the missing modalities' experts
  ("missing"; the CMMD paper's App. E names "the joint MoE posterior" for both and its Sec. 4.2
  reads them as "both marginal distributions" conditioned on xO and on xM); ``z_given_xM="joint"``
  takes the mixture of all experts. The decoder variance of a Gaussian missing modality is 2 s^2
  (Laplace) or s^2 (Gaussian) with s = ``likelihood_scale``.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.distributions import Independent, Laplace

from mmbench import bounds
from mmbench.experts import mixture_log_prob, mixture_moments
from mmbench.model import DataSpec, GaussianStats, PosteriorStats, TorchModel
from mmbench.nn import likelihood_head, stochastic_mlp
from mmbench.views import Views

SCALE_FLOOR = 1e-6  # the authors' eta: added to posterior scales, clamps Laplace means in (0, 1)
OBJECTIVES = ("elbo", "iwae", "dreg")
LIKELIHOODS = ("laplace", "modality")


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


def decoder_head(model: "MMVAE", likelihood: str, in_dim: int, out_dim: int) -> nn.Module:
    """p(x_m | z) for a modality of ``likelihood``: the authors' Laplace, or (``model.likelihood
    == "modality"``) its own family with the fixed Gaussian variance ``likelihood_scale ** 2``."""
    if model.likelihood == "laplace":
        return LaplaceLikelihood(in_dim, out_dim, model.likelihood_scale, likelihood == "bernoulli")
    return likelihood_head(likelihood, in_dim, out_dim, model.likelihood_scale ** 2)


class MMVAENetwork(nn.Module):
    def __init__(self, spec: DataSpec, model: "MMVAE"):
        super().__init__()
        self.spec, self.hp = spec, model
        self.names = spec.modalities
        self.weights = spec.per_modality(model.likelihood_weights or {}, 1.0,
                                         f"{model.name}: likelihood_weights")
        decoder_hidden = model.hidden[::-1] if model.decoder_hidden is None else model.decoder_hidden
        act, drop = model.activation, model.dropout
        self.encoders, self.decoders = nn.ModuleDict(), nn.ModuleDict()
        for m in self.names:
            self.encoders[m] = stochastic_mlp(
                spec.dims[m], model.hidden, lambda width: LaplaceExpert(width, model.latent_dim),
                act, drop)
            self.decoders[m] = stochastic_mlp(
                model.latent_dim, decoder_hidden,
                lambda width: decoder_head(model, spec.likelihoods[m], width, spec.dims[m]),
                act, drop)
        self.prior_raw_scale = nn.Parameter(torch.zeros(model.latent_dim),
                                            requires_grad=model.learn_prior)

    def experts(self, batch, names) -> tuple[torch.Tensor, torch.Tensor]:
        """(loc, scale) of q(z | x_m) for the modalities ``names``, each (len(names), b, D)."""
        params = [self.encoders[m](batch[m]) for m in names]
        return torch.stack([p[0] for p in params]), torch.stack([p[1] for p in params])

    def prior(self) -> Independent:
        scale = softmax_scale(self.prior_raw_scale)
        return laplace(torch.zeros_like(scale), scale)

    def log_weights(self, batch, detach_posterior: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(log w, z): K stratified samples z from every expert, (K, M, b, D), and their
        log-weights (K, M, b); the experts' parameters are detached in log q when asked (DReG)."""
        loc, scale = self.experts(batch, self.names)                       # (M, b, D)
        z = laplace(loc, scale).rsample((self.hp.K,))                      # (K, M, b, D)
        if detach_posterior:
            loc, scale = loc.detach(), scale.detach()
        # log q(z | x_m') of every sample under every expert m': (K, M, M', b).
        log_q = laplace(loc, scale).log_prob(z.unsqueeze(2))
        log_w = self.prior().log_prob(z) - mixture_log_prob(log_q, dim=2)
        flat = z.reshape(-1, *z.shape[2:])                                 # (K*M, b, D)
        for m in self.names:
            log_lik = self.decoders[m](flat).log_prob(batch[m])            # (K*M, b)
            log_w = log_w + self.weights[m] * log_lik.reshape(log_w.shape)
        return log_w, z

    def loss(self, batch):
        objective, looser = self.hp.objective, self.hp.looser
        dreg = objective == "dreg" and self.training
        log_w, z = self.log_weights(batch, detach_posterior=dreg)
        # The samples a bound pools: all M*K, or (looser) each expert's K, then a mean over M.
        samples = 0 if looser else (0, 1)
        if objective == "elbo":
            bound = bounds.elbo(log_w, dim=(0, 1))
        elif dreg:
            bound = bounds.dreg_iwae(log_w, z, dim=samples)
        else:
            bound = bounds.iwae(log_w, dim=samples)
        if looser:
            bound = bound.mean(0)
        return -bound.mean(), {objective: bound.mean().detach()}

    def decode_means(self, z: torch.Tensor, names) -> dict[str, torch.Tensor]:
        return {m: self.decoders[m](z).mean for m in names}


class MMVAE(TorchModel):
    """MMVAE: mixture-of-experts posterior, Laplace prior and posteriors (Shi et al. 2019).

    latent_dim: D (the paper: 20). hidden: hidden sizes of every encoder (the authors' MNIST:
    one layer of 400); decoder_hidden: of every decoder (None: ``hidden`` reversed).
    activation, dropout: of every hidden layer (authors: ReLU, none).
    objective: "elbo", "iwae" or "dreg" (see the module's docstring); K: samples per expert
        (the paper: 30 for its IWAE/DReG runs; the CMMD paper: 10); looser: average the
        per-expert IWAE bounds (iwae, dreg only).
    likelihood: "laplace" (the authors') or "modality"; likelihood_scale: their fixed scale
        (0.75). likelihood_weights: lambda_d per modality name (default 1; the authors up-weight
        MNIST by 3072/784 in MNIST-SVHN).
    learn_prior: learn the prior's scales (authors' MNIST-SVHN setting).
    z_given_xM: the posterior ``posteriors`` reports as z|xM: "missing" or "joint".
    Train with the authors' Adam (lr 1e-3, amsgrad) via the suite's ``train`` section.
    """

    name = "mmvae"
    capabilities = frozenset({"generate", "posteriors"})

    def __init__(self, latent_dim: int = 20, hidden: Sequence[int] = (400,),
                 decoder_hidden: Sequence[int] | None = None, activation: str = "relu",
                 dropout: float = 0.0, objective: str = "elbo", K: int = 1, looser: bool = False,
                 likelihood: str = "laplace", likelihood_scale: float = 0.75,
                 likelihood_weights: Mapping[str, float] | None = None, learn_prior: bool = True,
                 z_given_xM: str = "missing"):
        for option, value, allowed in (("objective", objective, OBJECTIVES),
                                       ("likelihood", likelihood, LIKELIHOODS),
                                       ("z_given_xM", z_given_xM, ("missing", "joint"))):
            if value not in allowed:
                raise ValueError(f"{self.name}: {option}={value!r}; allowed: {allowed}")
        if latent_dim < 1 or K < 1:
            raise ValueError(f"{self.name}: latent_dim and K must be >= 1, got {latent_dim} "
                             f"and {K}")
        if likelihood_scale <= 0:
            raise ValueError(f"{self.name}: likelihood_scale must be > 0, got {likelihood_scale}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{self.name}: dropout must lie in [0, 1), got {dropout}")
        if looser and objective == "elbo":
            raise ValueError(f"{self.name}: looser applies to the iwae and dreg objectives; with "
                             "the mixture in log w the ELBO has no looser variant")
        self.latent_dim, self.hidden = latent_dim, tuple(hidden)
        self.decoder_hidden = None if decoder_hidden is None else tuple(decoder_hidden)
        self.activation, self.dropout = activation, dropout
        self.objective, self.K, self.looser = objective, K, looser
        self.likelihood, self.likelihood_scale = likelihood, likelihood_scale
        self.likelihood_weights = None if likelihood_weights is None else dict(likelihood_weights)
        self.learn_prior, self.z_given_xM = learn_prior, z_given_xM

    def build(self, spec: DataSpec) -> MMVAENetwork:
        return MMVAENetwork(spec, self)

    def _observed_mean(self, batch) -> torch.Tensor:
        return self.module_.experts(batch, self.spec_.observed)[0].mean(0)

    def represent(self, xO) -> np.ndarray:
        """Mean of the observed experts' mixture, (n, latent_dim)."""
        return self.batched(self._observed_mean, xO)

    def generate(self, xO) -> dict[str, np.ndarray]:
        """Decoder means of the missing modalities at the observed experts' mixture mean."""
        return self.batched(
            lambda b: self.module_.decode_means(self._observed_mean(b), self.spec_.missing), xO)

    def posteriors(self, views: Views) -> PosteriorStats:
        """Moment-matched Gaussians of the observed experts' mixture (z|xO) and of the missing
        (or all) experts' mixture (z|xM); fixed decoder log-variances of the Gaussian missing
        modalities (see the module's docstring)."""
        given_xM = self.spec_.missing if self.z_given_xM == "missing" else self.module_.names

        def moment_matched(batch, names):
            loc, scale = self.module_.experts(batch, names)
            mean, variance = mixture_moments(loc, 2 * scale ** 2)
            return mean, variance.log()

        def stats(batch):
            out = dict(zip(("mean_o", "logvar_o"), moment_matched(batch, self.spec_.observed)))
            if given_xM:
                out.update(zip(("mean_m", "logvar_m"), moment_matched(batch, given_xM)))
            return out

        out = self.batched(stats, views.data)
        gaussian_missing = self.spec_.gaussian_missing
        decoder_logvar = None
        if gaussian_missing:
            variance = self.likelihood_scale ** 2 * (2 if self.likelihood == "laplace" else 1)
            width = sum(self.spec_.missing[m] for m in gaussian_missing)
            decoder_logvar = np.full((views.n, width), math.log(variance), dtype=np.float32)
        return PosteriorStats(
            GaussianStats(out["mean_o"], out["logvar_o"]),
            GaussianStats(out["mean_m"], out["logvar_m"]) if given_xM else None,
            decoder_logvar)


class MMVAEELBO(MMVAE):
    """MMVAE trained with the stratified ELBO (objective "elbo", K = 1)."""

    name = "mmvae_elbo"


class MMVAEIWAE(MMVAE):
    """MMVAE trained with the importance-weighted bound and DReG gradients (K = 10).

    Defaults: objective "dreg" and K = 10, the CMMD paper's setting (the MMVAE paper used 30).
    """

    name = "mmvae_iwae"

    def __init__(self, objective: str = "dreg", K: int = 10, **params):
        super().__init__(objective=objective, K=K, **params)
