"""Joint multimodal VAE with KL-trained unimodal encoders, JMVAE-kl (Suzuki, Nakayama & Matsuo
2016, "Joint Multimodal Learning with Deep Generative Models").

A joint encoder q(z | X) = N(mu, diag(var)) reads every modality X = (x_1, ..., x_M) at once;
every modality m has a decoder p(x_m | z) (Bernoulli or Gaussian, from ``Modality.likelihood``)
and a unimodal encoder q(z | x_m) for test time, when only some modalities are observed. The
objective (maximised; the loss is minus its batch mean) is the paper's JMVAE-kl bound, written
for M modalities:

    L(X) = E_{q(z|X)}[ sum_m lambda_m log p(x_m | z) ] - KL( q(z | X) || N(0, I) )
           - alpha sum_m KL( q(z | X) || q(z | x_m) ).

One z is drawn per point (reparameterised), every KL is closed form
(``torch.distributions.kl_divergence``), and the gradients of the alpha terms reach both the joint
and the unimodal encoders, as in the authors' code (Tars v0.0.2, ``Tars/model/mvae.py``,
``MVAE.lowerbound``). With alpha = 0 the objective is the ELBO of a VAE on the concatenated
modalities and the unimodal encoders do not train. The authors' code also clips the gradients
(norm 5, then each element to 1); mmbench's trainer does not.

Test time (no classifier of its own; scored by the suite's downstream protocol):
- z given the observed modalities xO: the unimodal encoder q(z | x_m) when one is observed, the
  product of the observed unimodal encoders (:func:`mmbench.experts.product_of_experts`, no prior
  expert) when several are, and the joint encoder when all are;
- ``represent(xO)``: the mean of that posterior; ``generate(xO)``: the decoders' means there;
- ``posteriors``: z|xO is that posterior; z|xM is the same construction from the missing
  modalities ("missing"), or the joint encoder q(z | X) ("joint"); the decoder log-variances of the
  Gaussian missing modalities at the mean of z|xO.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch.distributions import kl_divergence

from mmbench.config import (
    DecoderHidden,
    GaussianModalityVariance,
    HiddenActivation,
    HiddenDropout,
    LatentDim,
    Layers,
    ModalityWeights,
    ModelConfig,
    NonNegativeReal,
)
from mmbench.experts import product_of_experts
from mmbench.model import DataSpec, LatentMeanModel, PosteriorTensors, concat
from mmbench.multimodal_vae import (
    MultimodalVAENetwork,
    gaussian_experts,
    stack_experts,
)
from mmbench.nn import (
    GaussianHead,
    gaussian_posterior,
    log_variances,
    standard_normal_like,
    stochastic_mlp,
)
from mmbench.trainer import Batch, Progress


class JMVAEConfig(ModelConfig):
    """JMVAE-kl's hyper-parameters (the authors' MNIST: latent_dim 64, encoders and decoders of
    2 x 512 ReLU, alpha 1 (their script's default); Adam 1e-3, batch 100)."""

    test_params: ClassVar[dict[str, Any]] = {"latent_dim": 6, "hidden": (32,)}

    latent_dim: LatentDim = 64
    hidden: Layers = Field(
        (512, 512), description="hidden layers of the joint encoder and of every unimodal encoder"
    )
    decoder_hidden: DecoderHidden = None
    activation: HiddenActivation = "relu"
    dropout: HiddenDropout = 0.0
    alpha: NonNegativeReal = Field(
        1.0,
        description="weight of the KL terms from the joint to each unimodal encoder (the "
        "authors' script: 1; 0: a joint VAE, the unimodal encoders untrained)",
    )
    decoder_variance: GaussianModalityVariance = "shared"
    likelihood_weights: ModalityWeights = None
    z_given_xM: Literal["missing", "joint"] = Field(
        "missing",
        description='the posterior reported as z|xM: from the "missing" modalities\' '
        'unimodal encoders, or the joint encoder q(z|X) ("joint")',
    )


class JMVAENetwork(MultimodalVAENetwork):
    config: JMVAEConfig

    def __init__(self, spec: DataSpec, config: JMVAEConfig):
        super().__init__(spec, config)
        latent, act, drop = config.latent_dim, config.activation, config.dropout
        self.joint_encoder = stochastic_mlp(
            sum(spec.dims.values()),
            config.hidden,
            lambda width: GaussianHead(width, latent, "input"),
            act,
            drop,
        )
        self.encoders = gaussian_experts(spec.dims, config.hidden, latent, act, drop)
        self.decoders = self.data_likelihood_decoders()

    def loss(
        self, batch: Batch, progress: Progress | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        joint = self.joint_encoder(concat(batch, self.names))  # q(z | X), batch (b,)
        z = joint.rsample()
        kl = kl_divergence(joint, standard_normal_like(z))
        log_lik = torch.stack(
            [self.weights[m] * self.decoders[m](z).log_prob(batch[m]) for m in self.names]
        ).sum(0)
        kl_unimodal = torch.stack(
            [kl_divergence(joint, self.encoders[m](batch[m])) for m in self.names]
        ).sum(0)
        loss = (-log_lik + kl + self.config.alpha * kl_unimodal).mean()
        return loss, {
            "reconstruction": -log_lik.mean(),
            "kl": kl.mean(),
            "kl_unimodal": kl_unimodal.mean(),
        }

    def posterior(self, batch: Batch, names: Collection[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar), each (b, latent_dim), of z given the modalities ``names``: the joint
        encoder when they are every modality, else the product of their unimodal encoders."""
        if set(names) == set(self.names):
            return gaussian_posterior(self.joint_encoder(concat(batch, self.names)))
        mean, logvar = stack_experts(
            [gaussian_posterior(self.encoders[m](batch[m])) for m in names]
        )
        return product_of_experts(mean, logvar, prior_expert=False)


class JMVAE(LatentMeanModel[JMVAEConfig, JMVAENetwork]):
    """JMVAE-kl: a joint encoder, and unimodal encoders trained towards it (Suzuki et al. 2016)."""

    name = "jmvae"
    capabilities = frozenset({"generate", "posteriors"})

    def latent_mean(self, batch: Batch) -> torch.Tensor:
        """Mean of z given xO (unimodal encoder, or their product; see the module), (b, d);
        ``represent`` returns it and ``generate`` decodes it."""
        return self.module_.posterior(batch, self.spec_.observed)[0]

    def batch_posteriors(self, batch: Batch) -> PosteriorTensors:
        """z|xO and z|xM (from the missing modalities or the joint encoder, see ``z_given_xM``;
        None when no modality is missing); decoder log-variances of the Gaussian missing
        modalities at the mean of z|xO."""
        network, spec = self.module_, self.spec_
        z_given_xO = network.posterior(batch, spec.observed)
        z_given_xM = None
        if spec.missing:
            z_given_xM = network.posterior(
                batch, spec.missing if self.config.z_given_xM == "missing" else spec.modalities
            )
        decoded = {m: network.decoders[m](z_given_xO[0]) for m in spec.gaussian_missing}
        return PosteriorTensors(
            z_given_xO, z_given_xM, log_variances(decoded, spec.gaussian_missing)
        )
