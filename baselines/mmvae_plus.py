"""MMVAE+ (Palumbo, Daunhawer & Vogt, ICLR 2023): MMVAE with modality-specific latents whose
cross-modal reconstructions draw the target's specific latent from an auxiliary prior.

Every modality m has a latent split into a shared z (``latent_dim``) and a modality-specific w_m
(``private_dim``), an encoder q(w_m, z | x_m) = q(w_m | x_m) q(z | x_m) of two Laplace experts
(loc linear, scale = softmax(raw) * D + 1e-6 over each latent's own D dimensions, as in MMVAE),
a decoder p(x_m | w_m, z) and an auxiliary prior r_m(w_m) = Laplace(0, softmax(rho_m) * D_w)
with learned rho_m. The prior p(z) p(w_m) is Laplace(0, 1), fixed. As in MMVAE, K samples are
drawn from every expert (stratified) in one reparameterised call, and the log-weight of a sample
(w_r, z) drawn from the encoder of modality r is

    log w = sum_d lambda_d log p(x_d | w^(d), z)
            + beta [ log p(z) + log p(w_r) - log (1/M) sum_m q(z | x_m) - log q(w_r | x_r) ],

where w^(r) = w_r reconstructs x_r and, for d != r, w^(d) ~ r_d(w_d) (reparameterised, so that
rho_d learns) is the modality-specific latent of the cross-modal reconstruction of x_d. Each
decoder runs once on all M*K samples of a batch. Objectives (maximised; the loss is minus their
batch mean):

    "iwae"  the importance-weighted bound; with ``looser`` (the authors' bound, their default)
            the mean over r of log (1/K) sum_k w_rk, else log (1/MK) sum over all M*K samples.
            With K = 1 it is the ELBO (the authors' ``m_elbo``);
    "dreg"  the same bound with DReG gradients (Tucker et al. 2019,
            :func:`mmbench.bounds.dreg_iwae`): the experts' parameters are detached in log q and
            the gradients through the samples (w, z) are weighted by the squared normalised
            weights. The authors' ``_m_dreg`` (``src/objectives.py``) builds its log q from
            parameters that are not detached, which keeps the score-function term; ours is
            Tucker et al.'s estimator (as in :mod:`baselines.mmvae`). It is unbiased for one
            modality or K = 1; with the mixture density in log w and K > 1 it is the
            estimator MMVAE's authors use, not an exactly unbiased one.

With ``private_dim = 0`` the model is MMVAE (:mod:`baselines.mmvae`) with a fixed Laplace(0, 1)
prior and the weight beta.

Likelihoods (``likelihood``): "laplace" is the authors': Laplace(mean, ``likelihood_scale``) with
the mean a clamped sigmoid for modalities in [0, 1] and linear otherwise; "modality" uses each
modality's own family (Bernoulli, or Gaussian with the fixed variance ``likelihood_scale ** 2``).

Test time (no classifier of its own; scored by the suite's downstream protocol), on the shared z:
- ``represent(xO)``: the mean of the observed experts' mixture of q(z | x_m) (their locs' mean);
- ``generate(xO)``: the decoders' means at that z with w_d at its auxiliary prior's mean, 0;
- ``posteriors``: as MMVAE's, Gaussians with the mean and variance of the Laplace mixtures
  (variance 2 b^2 per Laplace): z|xO of the observed experts' q(z | x_m), z|xM of the missing
  ("missing") or of all ("joint") experts'; the decoder log-variances of the Gaussian missing
  modalities at that point.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn
from torch.distributions import Distribution, Independent

from mmbench.config import (
    DecoderHidden,
    EncoderHidden,
    FixedLikelihoodScale,
    Flag,
    HiddenActivation,
    HiddenDropout,
    LikelihoodFamily,
    LikelihoodWeights,
    ModelConfig,
    NonNegativeInt,
    NonNegativeReal,
    PositiveInt,
)
from mmbench.experts import mixture_log_prob, mixture_moments
from mmbench.model import DataSpec, LatentMeanModel, PosteriorTensors
from mmbench.multimodal_vae import StratifiedMixtureNetwork, stack_experts
from mmbench.nn import (
    Factorized,
    FixedScaleLaplace,
    LaplaceExpert,
    decoder_layers,
    fixed_scale_likelihood,
    laplace,
    log_variances,
    softmax_scale,
    stochastic_mlp,
)
from mmbench.trainer import Batch


class MMVAEPlusConfig(ModelConfig):
    """MMVAE+'s hyper-parameters (the authors' PolyMNIST: shared and modality-specific latents of
    32 each, beta 1, Laplace likelihoods of scale 0.75; Adam 1e-3 with amsgrad, batch 128, 150
    epochs; their networks are ResNets, these MLPs MMVAE's)."""

    test_params: ClassVar[dict[str, Any]] = {
        "latent_dim": 6,
        "private_dim": 2,
        "hidden": (32,),
        "K": 2,
    }

    latent_dim: PositiveInt = Field(32, description="size of the shared latent z")
    private_dim: NonNegativeInt = Field(
        32, description="size of every modality-specific latent w_m (0: MMVAE)"
    )
    hidden: EncoderHidden = (400,)
    decoder_hidden: DecoderHidden = None
    activation: HiddenActivation = "relu"
    dropout: HiddenDropout = 0.0
    objective: Literal["iwae", "dreg"] = Field(
        "dreg", description="the bound maximised (see the module's docstring)"
    )
    K: PositiveInt = Field(
        1, description="samples per expert (the authors' script: 1, the ELBO; more with dreg)"
    )
    looser: Flag = Field(
        True, description="average the per-expert bounds over the modalities (the authors')"
    )
    beta: NonNegativeReal = Field(
        1.0, description="weight of log p(z, w) - log q(z, w | x) in the log-weight (authors: 1)"
    )
    likelihood: LikelihoodFamily = "laplace"
    likelihood_scale: FixedLikelihoodScale = 0.75
    likelihood_weights: LikelihoodWeights | None = Field(
        None, description="lambda_d, the weight of each modality's log-likelihood (None: 1)"
    )
    z_given_xM: Literal["missing", "joint"] = Field(
        "missing",
        description='the posterior reported as z|xM: the mixture of the "missing" '
        'modalities\' experts or of all ("joint")',
    )


class SharedPrivateExpert(LaplaceExpert):
    """Features -> (loc, scale) of q(w_m | x_m) q(z | x_m), w's dimensions first: the shared
    Laplace expert of z (this class's own layers, as MMVAE's) and, when ``private_dim`` > 0, a
    second one for w_m; each has its own softmax scales."""

    def __init__(self, in_dim: int, latent_dim: int, private_dim: int):
        super().__init__(in_dim, latent_dim)
        self.private = LaplaceExpert(in_dim, private_dim) if private_dim else None

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, scale = super().forward(h)
        if self.private is None:
            return loc, scale
        private_loc, private_scale = self.private(h)
        return torch.cat([private_loc, loc], -1), torch.cat([private_scale, scale], -1)


class MMVAEPlusNetwork(StratifiedMixtureNetwork):
    """The loss is minus the batch mean of ``objective``'s bound (see the module's docstring)
    over the samples and log-weights of :meth:`log_weights`."""

    config: MMVAEPlusConfig

    def __init__(self, spec: DataSpec, config: MMVAEPlusConfig):
        super().__init__(spec, config)
        decoder_hidden = decoder_layers(config.hidden, config.decoder_hidden)
        act, drop = config.activation, config.dropout
        self.encoders, self.decoders = nn.ModuleDict(), nn.ModuleDict()
        for m in self.names:
            self.encoders[m] = stochastic_mlp(
                spec.dims[m],
                config.hidden,
                lambda width: SharedPrivateExpert(width, config.latent_dim, config.private_dim),
                act,
                drop,
            )
            self.decoders[m] = stochastic_mlp(
                config.private_dim + config.latent_dim,
                decoder_hidden,
                lambda width, m=m: fixed_scale_likelihood(
                    config.likelihood,
                    spec.likelihoods[m],
                    width,
                    spec.dims[m],
                    config.likelihood_scale,
                ),
                act,
                drop,
            )
        # rho_m of the auxiliary priors r_m(w_m), one row per modality
        self.auxiliary_raw_scale = nn.Parameter(torch.zeros(len(self.names), config.private_dim))

    def experts(self, batch: Batch, names: Collection[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(loc, scale) of q(w_m, z | x_m) for the modalities ``names``, each
        (len(names), b, private_dim + latent_dim), w's dimensions first."""
        return stack_experts([self.encoders[m](batch[m]) for m in names])

    def auxiliary_priors(self) -> Independent:
        """r_m(w_m) of every modality: batch shape (M,), event shape (private_dim,)."""
        scale = softmax_scale(self.auxiliary_raw_scale)
        return laplace(torch.zeros_like(scale), scale)

    def split(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(w, z) of latents laid out as the experts' (w's dimensions first)."""
        return u.split([self.config.private_dim, self.config.latent_dim], dim=-1)

    def log_weights(
        self, batch: Batch, detach_posterior: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log w, u): K stratified samples u = (w_r, z) from every expert r, (K, M, b, D_w + D),
        and their log-weights (K, M, b); the experts' parameters are detached in log q when asked
        (DReG)."""
        config, n = self.config, len(self.names)
        loc, scale = self.experts(batch, self.names)  # (M, b, D_w + D)
        u = laplace(loc, scale).rsample((config.K,))  # (K, M, b, D_w + D)
        if detach_posterior:
            loc, scale = loc.detach(), scale.detach()
        (w, z), (loc_w, loc_z), (scale_w, scale_z) = map(self.split, (u, loc, scale))
        # log q(z | x_m') of every sample under every expert m': (K, M, M', b).
        log_q_z = mixture_log_prob(laplace(loc_z, scale_z).log_prob(z.unsqueeze(2)), dim=2)
        log_q_w = laplace(loc_w, scale_w).log_prob(w)  # each expert's own w_r
        log_prior = Factorized(FixedScaleLaplace(u.new_zeros(u.shape[-1]), 1.0)).log_prob(u)
        log_w = config.beta * (log_prior - log_q_z - log_q_w)
        # w_d of the cross-modal reconstructions: (K, M, b, M_d, D_w), drawn from r_d
        auxiliary = self.auxiliary_priors().rsample(u.shape[:3])
        experts = torch.arange(n, device=u.device).view(1, n, 1, 1)
        for d, m in enumerate(self.names):
            w_d = torch.where(experts == d, w, auxiliary[..., d, :])
            decoded = self.decoders[m](torch.cat([w_d, z], -1).flatten(0, 1))  # (K*M, b, .)
            log_w = log_w + self.weights[m] * decoded.log_prob(batch[m]).reshape(log_w.shape)
        return log_w, u

    def shared_mean(self, batch: Batch, names: Collection[str]) -> torch.Tensor:
        """The mean of the mixture of q(z | x_m) over the modalities ``names``: (b, latent_dim)."""
        return self.split(self.experts(batch, names)[0])[1].mean(0)

    def decode(self, z: torch.Tensor, names: Collection[str]) -> dict[str, Distribution]:
        """p(x_d | w_d, z) of the modalities ``names`` at the shared z (b, latent_dim), with every
        w_d at its auxiliary prior's mean, 0."""
        code = torch.cat([z.new_zeros(*z.shape[:-1], self.config.private_dim), z], -1)
        return {m: self.decoders[m](code) for m in names}


class MMVAEPlus(LatentMeanModel[MMVAEPlusConfig, MMVAEPlusNetwork]):
    """MMVAE+ (Palumbo et al. 2023): MMVAE with modality-specific latents and auxiliary priors.

    Shared and modality-specific Laplace latents, cross-modal reconstructions through the
    auxiliary priors, IWAE / DReG bounds."""

    name = "mmvae_plus"
    capabilities = frozenset({"generate", "posteriors"})

    def latent_mean(self, batch: Batch) -> torch.Tensor:
        """Mean of the observed experts' mixture of q(z | x_m), (b, latent_dim); ``represent``
        returns it and ``generate`` decodes it."""
        return self.module_.shared_mean(batch, self.spec_.observed)

    def decode_missing(self, batch: Batch, z: torch.Tensor) -> dict[str, Distribution]:
        """p(x_d | w_d, z) of the missing modalities, w_d at its auxiliary prior's mean."""
        return self.module_.decode(z, self.spec_.missing)

    def batch_posteriors(self, batch: Batch) -> PosteriorTensors:
        """Moment-matched Gaussians of the observed experts' mixture of q(z | x_m) (z|xO) and of
        the missing (or all) experts' (z|xM; None when no modality is missing); decoder
        log-variances of the Gaussian missing modalities at the mean of z|xO."""
        network, spec = self.module_, self.spec_

        def moment_matched(names: Collection[str]) -> tuple[torch.Tensor, torch.Tensor]:
            (_, loc), (_, scale) = map(network.split, network.experts(batch, names))
            mean, variance = mixture_moments(loc, 2 * scale**2)
            return mean, variance.log()

        z_given_xO = moment_matched(spec.observed)
        z_given_xM = None
        if spec.missing:
            z_given_xM = moment_matched(
                spec.missing if self.config.z_given_xM == "missing" else spec.modalities
            )
        decoded = network.decode(z_given_xO[0], spec.gaussian_missing)
        return PosteriorTensors(
            z_given_xO, z_given_xM, log_variances(decoded, spec.gaussian_missing)
        )
