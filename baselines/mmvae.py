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
``likelihood_scale``, or with a learned variance: ``likelihood_scale="shared"`` (one per
feature) or ``"input"`` (a linear log-variance head, a function of z), as CMMD's and VCCA's
decoders (the CMMD paper's Fig. 2 reads MMVAE's decoder variances).

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
  (Laplace) or s^2 (Gaussian) with s = ``likelihood_scale``, or the learned variance at the
  observed experts' mixture mean.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeAlias

import torch
from pydantic import Field, ValidationInfo, field_validator
from torch import nn
from torch.distributions import Independent

from mmbench.config import (
    DecoderHidden,
    EncoderHidden,
    Flag,
    HiddenActivation,
    HiddenDropout,
    LikelihoodFamily,
    LikelihoodWeights,
    ModelConfig,
    PositiveInt,
    PositiveReal,
    choice_or_number,
    with_defaults,
)
from mmbench.experts import mixture_log_prob, mixture_moments
from mmbench.model import DataSpec, LatentMeanModel, PosteriorTensors
from mmbench.multimodal_vae import StratifiedMixtureNetwork, stack_experts
from mmbench.nn import (
    LaplaceExpert,
    decoder_layers,
    fixed_scale_likelihood,
    gaussian_logvars,
    laplace,
    likelihood_head,
    softmax_scale,
    stochastic_mlp,
)
from mmbench.trainer import Batch

if TYPE_CHECKING:  # mypy cannot evaluate the call below: the values it validates to
    LikelihoodScale: TypeAlias = Literal["shared", "input"] | float
else:
    LikelihoodScale = choice_or_number(Literal["shared", "input"], PositiveReal)


class MMVAEConfig(ModelConfig):
    """MMVAE's hyper-parameters (the paper: latent_dim 20; the authors' MNIST: one hidden layer
    of 400, ReLU, no dropout). Train with the authors' Adam (lr 1e-3, amsgrad) via the suite's
    ``train`` section."""

    test_params: ClassVar[dict[str, Any]] = {"latent_dim": 6, "hidden": (32,)}

    latent_dim: PositiveInt = Field(20, description="size D of z")
    hidden: EncoderHidden = (400,)
    decoder_hidden: DecoderHidden = None
    activation: HiddenActivation = "relu"
    dropout: HiddenDropout = 0.0
    objective: Literal["elbo", "iwae", "dreg"] = Field(
        "elbo", description="the bound maximised (see the module's docstring)"
    )
    K: PositiveInt = Field(
        1, description="samples per expert (the MMVAE paper: 30 for IWAE/DReG; CMMD's: 10)"
    )
    looser: Flag = Field(
        False, description="average the per-expert bounds (the iwae and dreg objectives only)"
    )
    likelihood: LikelihoodFamily = "laplace"
    likelihood_scale: LikelihoodScale = Field(
        0.75,
        description="the likelihoods' fixed scale (the authors': 0.75), or with "
        'likelihood "modality" a learned Gaussian variance: "shared" (one per '
        'feature) or "input" (a function of z)',
    )
    likelihood_weights: LikelihoodWeights | None = Field(
        None,
        description="lambda_d, the weight of each modality's log-likelihood (None: 1; the "
        "authors up-weight MNIST by 3072/784 in MNIST-SVHN)",
    )
    learn_prior: Flag = Field(
        True, description="learn the prior's scales (the authors' MNIST-SVHN setting)"
    )
    z_given_xM: Literal["missing", "joint"] = Field(
        "missing",
        description='the posterior reported as z|xM: the mixture of the "missing" '
        'modalities\' experts or of all ("joint")',
    )

    @field_validator("likelihood_scale")
    @classmethod
    def _learned_scales_are_gaussian_variances(
        cls, scale: float | str, info: ValidationInfo
    ) -> float | str:
        if isinstance(scale, str) and info.data.get("likelihood") == "laplace":
            raise ValueError(
                f"Input should be a number with likelihood 'laplace'; a learned "
                f"scale ({scale!r}) is a Gaussian variance: set likelihood: "
                "modality"
            )
        return scale

    @field_validator("looser")
    @classmethod
    def _looser_needs_a_multi_sample_bound(cls, looser: bool, info: ValidationInfo) -> bool:
        if looser and info.data.get("objective") == "elbo":
            raise ValueError(
                "Input should be false with the elbo objective: with the mixture "
                "in log w the ELBO has no looser variant"
            )
        return looser


MMVAEIWAEConfig = with_defaults(
    MMVAEConfig,
    "MMVAEIWAEConfig",
    objective="dreg",
    K=10,
    test_params={**MMVAEConfig.test_params, "K": 3},
    doc="MMVAE's hyper-parameters with the importance-weighted bound and DReG gradients by "
    "default, K = 10 (the CMMD paper's setting; the MMVAE paper used 30).",
)


def decoder_head(config: MMVAEConfig, likelihood: str, in_dim: int, out_dim: int) -> nn.Module:
    """p(x_m | z) for a modality of ``likelihood``: the authors' Laplace, or (``config.likelihood
    == "modality"``) its own family, Gaussians with the fixed variance ``likelihood_scale ** 2``
    or a learned one ("shared", "input"; the config refuses learned Laplace scales)."""
    scale = config.likelihood_scale
    if isinstance(scale, str):
        return likelihood_head(likelihood, in_dim, out_dim, scale)
    return fixed_scale_likelihood(config.likelihood, likelihood, in_dim, out_dim, scale)


class MMVAENetwork(StratifiedMixtureNetwork):
    """The loss is minus the batch mean of ``objective``'s bound (see the module's docstring)
    over the samples and log-weights of :meth:`log_weights`."""

    config: MMVAEConfig

    def __init__(self, spec: DataSpec, config: MMVAEConfig):
        super().__init__(spec, config)
        decoder_hidden = decoder_layers(config.hidden, config.decoder_hidden)
        act, drop = config.activation, config.dropout
        self.encoders, self.decoders = nn.ModuleDict(), nn.ModuleDict()
        for m in spec.modalities:
            self.encoders[m] = stochastic_mlp(
                spec.dims[m],
                config.hidden,
                lambda width: LaplaceExpert(width, config.latent_dim),
                act,
                drop,
            )
            self.decoders[m] = stochastic_mlp(
                config.latent_dim,
                decoder_hidden,
                lambda width, m=m: decoder_head(config, spec.likelihoods[m], width, spec.dims[m]),
                act,
                drop,
            )
        self.prior_raw_scale = nn.Parameter(
            torch.zeros(config.latent_dim), requires_grad=config.learn_prior
        )

    def experts(self, batch: Batch, names: Collection[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(loc, scale) of q(z | x_m) for the modalities ``names``, each (len(names), b, D)."""
        return stack_experts([self.encoders[m](batch[m]) for m in names])

    def prior(self) -> Independent:
        scale = softmax_scale(self.prior_raw_scale)
        return laplace(torch.zeros_like(scale), scale)

    def log_weights(
        self, batch: Batch, detach_posterior: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log w, z): K stratified samples z from every expert, (K, M, b, D), and their
        log-weights (K, M, b); the experts' parameters are detached in log q when asked (DReG)."""
        loc, scale = self.experts(batch, self.spec.modalities)  # (M, b, D)
        z = laplace(loc, scale).rsample((self.config.K,))  # (K, M, b, D)
        if detach_posterior:
            loc, scale = loc.detach(), scale.detach()
        # log q(z | x_m') of every sample under every expert m': (K, M, M', b).
        log_q = laplace(loc, scale).log_prob(z.unsqueeze(2))
        log_w = self.prior().log_prob(z) - mixture_log_prob(log_q, dim=2)
        flat = z.reshape(-1, *z.shape[2:])  # (K*M, b, D)
        for m in self.spec.modalities:
            log_lik = self.decoders[m](flat).log_prob(batch[m])  # (K*M, b)
            log_w = log_w + self.weights[m] * log_lik.reshape(log_w.shape)
        return log_w, z


class MMVAE(LatentMeanModel[MMVAEConfig, MMVAENetwork]):
    """MMVAE trained with the stratified ELBO (objective "elbo", K = 1) by default.

    A mixture-of-experts posterior, Laplace prior and posteriors (Shi et al. 2019).
    """

    name = "mmvae_elbo"
    capabilities = frozenset({"generate", "posteriors"})

    def latent_mean(self, batch: Batch) -> torch.Tensor:
        """Mean of the observed experts' mixture, (b, latent_dim); ``represent`` returns it and
        ``generate`` decodes it."""
        return self.module_.experts(batch, self.spec_.observed)[0].mean(0)

    def batch_posteriors(self, batch: Batch) -> PosteriorTensors:
        """Moment-matched Gaussians of the observed experts' mixture (z|xO) and of the missing
        (or all) experts' mixture (z|xM); decoder log-variances of the Gaussian missing
        modalities, at z = the observed experts' mixture mean (see the module's docstring)."""
        config = self.config
        given_xM = self.spec_.missing if config.z_given_xM == "missing" else self.spec_.modalities

        def moment_matched(names: Collection[str]) -> tuple[torch.Tensor, torch.Tensor]:
            loc, scale = self.module_.experts(batch, names)
            mean, variance = mixture_moments(loc, 2 * scale**2)
            return mean, variance.log()

        z_given_xO = moment_matched(self.spec_.observed)
        gaussian = self.spec_.gaussian_missing
        if config.likelihood == "modality":  # Gaussian heads, fixed or learned variance
            decoded = {m: self.module_.decoders[m](z_given_xO[0]) for m in gaussian}
            decoder_logvar = gaussian_logvars(decoded, gaussian)
        else:  # Laplace(mean, s): variance 2 s^2
            width = sum(self.spec_.missing[m] for m in gaussian)
            decoder_logvar = (
                z_given_xO[0].new_full(
                    (z_given_xO[0].shape[0], width),
                    math.log(2 * float(config.likelihood_scale) ** 2),
                )
                if width
                else None
            )
        return PosteriorTensors(
            z_given_xO, moment_matched(given_xM) if given_xM else None, decoder_logvar
        )


class MMVAEIWAE(MMVAE):
    """MMVAE trained with the importance-weighted bound and DReG gradients (K = 10)."""

    name = "mmvae_iwae"
    config_class = MMVAEIWAEConfig
