"""Mixture-of-Products-of-Experts VAE, MoPoE (Sutter, Daunhawer & Vogt, ICLR 2021).

Every modality m has a Gaussian expert q(z | x_m) = N(mu_m, diag(var_m)) and a decoder
p(x_m | z). Every non-empty subset s of the M modalities (S = 2^M - 1 of them,
:func:`mmbench.experts.nonempty_subsets`) has the product of its experts
q_s(z | X_s) ~ prod_{m in s} q(z | x_m), and the joint posterior is their mixture
q(z | X) = (1/S) sum_s q_s(z | X_s). The objective (maximised; the loss is minus its batch mean)
is the paper's generalised multimodal ELBO

    L(X) = E_{q(z|X)}[ sum_m lambda_m log p(x_m | z) ] - beta KL( q(z | X) || N(0, I) ).

Each modality is encoded once per batch and the S products are formed by masking the stacked
experts (:func:`mmbench.experts.product_of_experts`).

Sampling the mixture: one z per data point, from one subset's product, reparameterised. As in the
authors' code (``mixture_component_selection`` in ``utils/utils.py``), the mini-batch (shuffled
by the trainer) is cut in order into S equal shares and share s draws from subset s: stratified
over the subsets, not drawn uniformly per point. Each decoder runs once per batch.

The KL term (``kl``):
- "bound", the authors' (``calc_group_divergence_moe`` in ``divergence_measures/mm_div.py``):
  (1/S) sum_s KL(q_s || N(0, I)) in closed form, which bounds the mixture's KL from above
  (KL is convex), so the objective is a lower bound on L;
- "sampled": log q(z | X) - log N(z; 0, I) at each point's sample, with the mixture density
  (1/S) sum_s q_s(z): a one-sample estimate of the mixture's KL itself.

The prior expert (``prior_expert``): the authors' code multiplies N(0, I) into the product of the
full set only (``poe_fusion`` in ``utils/BaseMMVae.py``: "joint"); "none" leaves it out of every
product, "all" puts it into every one (MVAE's choice).

Likelihoods (``likelihood``): "laplace" is the authors' for images, Laplace(mean,
``likelihood_scale``) with a sigmoid mean for modalities in [0, 1] and a linear one otherwise;
"modality" uses each modality's own family (Bernoulli, or Gaussian with the fixed variance
``likelihood_scale ** 2``), as in :mod:`baselines.mmvae`.

Test time (no classifier of its own; scored by the suite's downstream protocol), as the authors
condition on a subset of modalities, through that subset's product:
- ``represent(xO)``: the mean of q_O(z | xO), the product of the observed experts (with the prior
  expert where ``prior_expert`` puts it: for "joint", only when every modality is observed);
- ``generate(xO)``: the decoders' means at that point;
- ``posteriors``: z|xO is q_O(z | xO); z|xM is q_M(z | xM), the product of the missing
  modalities' experts ("missing"), or ("joint") the Gaussian with the mean and variance of the
  whole mixture q(z | X) (:func:`mmbench.experts.mixture_moments`); the decoder log-variances of
  the Gaussian missing modalities at the mean of z|xO.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch.distributions import Independent, kl_divergence

from mmbench.config import (
    DecoderHidden,
    EncoderHidden,
    FixedLikelihoodScale,
    HiddenActivation,
    HiddenDropout,
    LatentDim,
    LikelihoodFamily,
    LikelihoodWeights,
    ModelConfig,
    NonNegativeReal,
)
from mmbench.experts import mixture_log_prob, mixture_moments, nonempty_subsets, product_of_experts
from mmbench.model import DataSpec, LatentMeanModel, PosteriorTensors
from mmbench.multimodal_vae import (
    MultimodalVAENetwork,
    gaussian_experts,
    modality_decoders,
    stack_experts,
)
from mmbench.nn import (
    decoder_layers,
    diagonal_normal,
    fixed_scale_likelihood,
    gaussian_posterior,
    log_variances,
    standard_normal_like,
)
from mmbench.trainer import Batch, Progress


class MoPoEConfig(ModelConfig):
    """MoPoE's hyper-parameters (the authors' MNIST-SVHN-Text: latent_dim 20, an MNIST encoder and
    decoder of one hidden layer of 400 ReLU, beta 2.5, Laplace likelihoods of scale 0.75, MNIST
    up-weighted by 3072/784; Adam 1e-3, batch 256, 200 epochs)."""

    test_params: ClassVar[dict[str, Any]] = {"latent_dim": 6, "hidden": (32,)}

    latent_dim: LatentDim = 20
    hidden: EncoderHidden = (400,)
    decoder_hidden: DecoderHidden = None
    activation: HiddenActivation = "relu"
    dropout: HiddenDropout = 0.0
    beta: NonNegativeReal = Field(
        1.0, description="weight of the KL term (1: the ELBO; the authors' runs: 2.5)"
    )
    kl: Literal["bound", "sampled"] = Field(
        "bound",
        description='the KL term: "bound" (the authors\': the mean over subsets of '
        'KL(q_s || N(0, I))) or "sampled" (log q(z|X) - log p(z) at the '
        "sample, with the mixture density)",
    )
    prior_expert: Literal["joint", "none", "all"] = Field(
        "joint",
        description="which products include the N(0, I) expert: the product of all "
        'modalities only ("joint", the authors\' code), "none" or "all"',
    )
    likelihood: LikelihoodFamily = "laplace"
    likelihood_scale: FixedLikelihoodScale = 0.75
    likelihood_weights: LikelihoodWeights | None = Field(
        None,
        description="lambda_m, the weight of each modality's log-likelihood (None: 1; the "
        "authors weigh a modality by 3072 / its size in MNIST-SVHN-Text)",
    )
    z_given_xM: Literal["missing", "joint"] = Field(
        "missing",
        description='the posterior reported as z|xM: the product of the "missing" '
        "modalities' experts, or the moment-matched mixture q(z|X) "
        '("joint")',
    )


class MoPoENetwork(MultimodalVAENetwork):
    config: MoPoEConfig

    subsets: torch.Tensor

    def __init__(self, spec: DataSpec, config: MoPoEConfig):
        super().__init__(spec, config)
        latent, act, drop = config.latent_dim, config.activation, config.dropout
        self.encoders = gaussian_experts(spec.dims, config.hidden, latent, act, drop)
        self.decoders = modality_decoders(
            self.names,
            latent,
            decoder_layers(config.hidden, config.decoder_hidden),
            lambda m, width: fixed_scale_likelihood(
                config.likelihood, spec.likelihoods[m], width, spec.dims[m], config.likelihood_scale
            ),
            act,
            drop,
        )
        # Not saved: a function of the number of modalities.
        self.register_buffer("subsets", nonempty_subsets(len(self.names)), persistent=False)

    def experts(self, batch: Batch, names: Collection[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar) of q(z | x_m) for the modalities ``names``, each
        (len(names), b, latent_dim)."""
        return stack_experts([gaussian_posterior(self.encoders[m](batch[m])) for m in names])

    def products(
        self, mean: torch.Tensor, logvar: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar), each (S, b, latent_dim), of the products of the experts ``mean``,
        ``logvar`` ((n, b, latent_dim), n <= M) over the subsets ``mask`` (S, n), with the prior
        expert N(0, I) where ``prior_expert`` puts it: every product ("all"), none ("none"), or
        ("joint") the products of all M modalities."""
        rule = self.config.prior_expert
        members = mask.sum(1, keepdim=True)
        with_prior = (
            members == len(self.names)
            if rule == "joint"
            else torch.full_like(members, rule == "all", dtype=torch.bool)
        )
        # The prior expert is one more expert, N(0, I), taking part where with_prior says.
        mean = torch.cat([mean, torch.zeros_like(mean[:1])])
        logvar = torch.cat([logvar, torch.zeros_like(logvar[:1])])
        return product_of_experts(
            mean, logvar, torch.cat([mask, with_prior.to(mask.dtype)], 1), prior_expert=False
        )

    def subset_posterior(
        self, batch: Batch, names: Collection[str]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar) of q_s(z | X_s) for the subset ``names``, each (b, latent_dim)."""
        mean, logvar = self.experts(batch, names)
        mask = torch.ones(1, len(names), device=mean.device)
        joint_mean, joint_logvar = self.products(mean, logvar, mask)
        return joint_mean[0], joint_logvar[0]

    def subset_posteriors(self, batch: Batch) -> Independent:
        """The S products q_s(z | X_s) of the subsets of all modalities: batch shape (S, b)."""
        return diagonal_normal(*self.products(*self.experts(batch, self.names), self.subsets))

    @staticmethod
    def mixture_log_prob(z: torch.Tensor, posteriors: Independent) -> torch.Tensor:
        """log q(z | X) = log (1/S) sum_s q_s(z | X_s) at points z (b, latent_dim), from the S
        products (batch shape (S, b)): (b,)."""
        return mixture_log_prob(posteriors.log_prob(z), dim=0)

    def loss(
        self, batch: Batch, progress: Progress | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        posteriors = self.subset_posteriors(batch)  # batch (S, b)
        mean, std = posteriors.base_dist.loc, posteriors.base_dist.scale  # (S, b, d)
        n_subsets, size = mean.shape[:2]
        points = torch.arange(size, device=mean.device)
        share = points * n_subsets // size  # the subset each point draws from, in order
        z = mean[share, points] + std[share, points] * torch.randn_like(mean[0])  # (b, d)
        if self.config.kl == "bound":
            kl = kl_divergence(posteriors, standard_normal_like(mean)).mean(0)
        else:
            kl = self.mixture_log_prob(z, posteriors) - standard_normal_like(z).log_prob(z)
        log_lik = torch.stack(
            [self.weights[m] * self.decoders[m](z).log_prob(batch[m]) for m in self.names]
        ).sum(0)
        reconstruction, kl_mean = -log_lik.mean(), kl.mean()  # once each, for loss and parts
        return reconstruction + self.config.beta * kl_mean, {
            "reconstruction": reconstruction,
            "kl": kl_mean,
        }

    def joint_moments(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar) of the Gaussian with the mean and variance of q(z | X), (b, d) each."""
        posteriors = self.subset_posteriors(batch)
        mean, variance = mixture_moments(posteriors.base_dist.loc, posteriors.base_dist.scale**2)
        return mean, variance.log()


class MoPoE(LatentMeanModel[MoPoEConfig, MoPoENetwork]):
    """MoPoE (Sutter et al. 2021): a mixture over subsets of modalities of products of experts."""

    name = "mopoe"
    capabilities = frozenset({"generate", "posteriors"})

    def latent_mean(self, batch: Batch) -> torch.Tensor:
        """Mean of q_O(z | xO), the product of the observed experts, (b, latent_dim);
        ``represent`` returns it and ``generate`` decodes it."""
        return self.module_.subset_posterior(batch, self.spec_.observed)[0]

    def batch_posteriors(self, batch: Batch) -> PosteriorTensors:
        """z|xO: q_O(z | xO); z|xM: q_M(z | xM) or the moment-matched q(z | X) (see
        ``z_given_xM``; None when no modality is missing); decoder log-variances of the Gaussian
        missing modalities at the mean of z|xO."""
        network, spec = self.module_, self.spec_
        z_given_xO = network.subset_posterior(batch, spec.observed)
        z_given_xM = None
        if spec.missing:
            z_given_xM = (
                network.subset_posterior(batch, spec.missing)
                if self.config.z_given_xM == "missing"
                else network.joint_moments(batch)
            )
        decoded = {m: network.decoders[m](z_given_xO[0]) for m in spec.gaussian_missing}
        return PosteriorTensors(
            z_given_xO, z_given_xM, log_variances(decoded, spec.gaussian_missing)
        )
