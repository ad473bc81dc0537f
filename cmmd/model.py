"""CMMD (paper Eq. 5 and Fig. 1).

    encoder       q(z | xO, xM, y)   Gaussian
    prior         p(z | xO)          Gaussian, conditioned on the observed modalities
    decoder       p(xM | xO, z)      Gaussian (learned or fixed variance) or Bernoulli per modality
    classifier    p(y | z)           fed from the prior p(z | xO) (Fig. 1)

Loss per batch (minimised), with z_q ~ q and z_p ~ p, batch means of every term:

    - E[log p(xM | xO, z_q)] - alpha E[log p(y | z_p)]
    + omega KL[q(z | xO, xM, y) || p(z | xO)] + (1 - omega) lambda MMD[z_q, z_p]

omega = 1 (and alpha = 1, classifier_input="posterior") is the negative ELBO of Eq. 1. At test
time the classifier and the decoder are fed the prior mean E[z | xO].

Two presets name complete recipes (``preset``; parameters given explicitly override it):

- "paper" (the default): Eq. 5 exactly - the exact Gaussian KL, the classification term as a
  batch mean, the classifier fed a sample z_p ~ p(z | xO) in training, input-dependent decoder
  variance (Eq. 6), PyTorch's default initialisation.
- "official": the authors' Theano code (github.com/rogelioamancisidor/cmmd) - the classifier fed
  the prior *mean* in training as at test (``classifier_input="prior_mean"``), their KL without
  the 1/2 on the variance ratio (``kl="official"``, d/2 when q = p), the classification term
  summed over the batch (``class_loss="sum"``: alpha x batch size in effect), input-dependent
  decoder variance (a linear log-variance head on the decoder's features), and weights drawn
  from N(0, 0.001^2) with zero biases (``init_std=0.001``: numpy's ``normal(scale=0.001)``, a
  standard deviation). The decoder is trained on posterior samples z_q in both. One difference
  is left: the authors' classifier has no dropout; ours applies ``dropout`` to its hidden layers.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn
from torch.distributions import Distribution, Independent, kl_divergence

from mmbench.config import (
    DecoderVariance,
    Flag,
    HiddenActivation,
    HiddenDropout,
    LatentDim,
    Layers,
    ModelConfig,
    NonNegativeReal,
    PositiveReal,
    Probability,
)
from mmbench.divergences import mmd, official_cmmd_kl
from mmbench.model import (
    Arrays,
    DataSpec,
    LatentMeanModel,
    PosteriorTensors,
    concat,
    one_hot_labels,
)
from mmbench.nn import (
    MLP,
    CategoricalHead,
    GaussianHead,
    class_probabilities,
    gaussian_logvars,
    gaussian_posterior,
    likelihood_head,
    stochastic_mlp,
)
from mmbench.trainer import Batch, Progress

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "kl": "paper",
        "class_loss": "mean",
        "classifier_input": "prior_sample",
        "decoder_variance": "input",
        "init_std": None,
    },
    "official": {
        "kl": "official",
        "class_loss": "sum",
        "classifier_input": "prior_mean",
        "decoder_variance": "input",
        "init_std": 0.001,
    },
}
"""The fields each preset sets (see the module's docstring); the fields' defaults are "paper"."""


class CMMDConfig(ModelConfig):
    """CMMD's hyper-parameters; the defaults are the paper's (Eq. 5; App. C, MNIST)."""

    test_params: ClassVar[dict[str, Any]] = {
        "latent_dim": 6,
        "encoder_hidden": (32,),
        "prior_hidden": (32,),
        "decoder_hidden": (32,),
        "classifier_hidden": (16,),
    }

    preset: Literal["paper", "official"] = Field(
        "paper",
        description='"paper" (Eq. 5 exactly) or "official" (the authors\' code): '
        "fills kl, class_loss, classifier_input, decoder_variance and "
        "init_std where they are not given",
    )
    omega: Probability = Field(
        0.5, description="weight of the term-by-term KL; 1 - omega weights the MMD"
    )
    alpha: NonNegativeReal = Field(
        10.0, description="weight of the classification log-likelihood (paper: 10)"
    )
    lambda_mmd: NonNegativeReal = Field(1000.0, description="scale of the MMD term (paper: 1000)")
    latent_dim: LatentDim = 50
    encoder_hidden: Layers = Field(
        (2500, 2500, 2500), description="hidden layers of the encoder q(z|xO,xM,y)"
    )
    prior_hidden: Layers = Field(
        (1024, 1024, 1024), description="hidden layers of the conditional prior p(z|xO)"
    )
    decoder_hidden: Layers = Field(
        (1024, 1024, 1024), description="hidden layers of the decoder p(xM|xO,z)"
    )
    classifier_hidden: Layers = Field(
        (50, 50), description="hidden layers of the classifier p(y|z)"
    )
    activation: HiddenActivation = "softplus"
    dropout: HiddenDropout = 0.2
    decoder_variance: DecoderVariance = Field(
        "input",
        description='variance of Gaussian decoders: "input" (a function of xO and z: '
        'paper Eq. 6 and the official code), "shared" (one learned per '
        "output dimension) or a fixed variance (e.g. 0.01, Sec. 4.4)",
    )
    kl: Literal["paper", "official"] = Field(
        "paper",
        description='"paper" (exact Gaussian KL) or "official" (the official code\'s, '
        "d/2 when q = p)",
    )
    class_loss: Literal["mean", "sum"] = Field(
        "mean",
        description='classification loss over the batch: "mean" (paper) or "sum" '
        "(official: alpha x batch size in effect)",
    )
    classifier_input: Literal["prior_sample", "prior_mean", "posterior"] = Field(
        "prior_sample",
        description='z fed to the classifier in training: "prior_sample" '
        '(z ~ p(z|xO), Fig. 1), "prior_mean" (E[z|xO], the official '
        'code, as at test) or "posterior" (z ~ q, the plain ELBO of '
        "Eq. 1)",
    )
    shared_noise: Flag = Field(
        True, description="prior and posterior samples share one noise draw (official code)"
    )
    mmd_bandwidth: PositiveReal | None = Field(
        None, description="Gaussian kernel scale of the MMD; None: latent_dim^2 (official code)"
    )
    init_std: PositiveReal | None = Field(
        None,
        description="initial weights of every linear layer ~ N(0, init_std^2), biases 0 "
        "(official code: 0.001); None: PyTorch's default initialisation",
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        """The preset's values for the fields not given (an unknown preset is left to the
        field's validation, which names the allowed ones)."""
        preset = data.get("preset", "paper") if isinstance(data, dict) else None
        if isinstance(preset, str) and preset in PRESETS:
            return {**PRESETS[preset], **data}
        return data


class CMMDNetwork(nn.Module):
    def __init__(self, spec: DataSpec, config: CMMDConfig):
        super().__init__()
        self.spec, self.config = spec, config
        latent, act, drop = config.latent_dim, config.activation, config.dropout

        def gaussian(width: int) -> GaussianHead:
            return GaussianHead(width, latent, "input")

        self.encoder = stochastic_mlp(
            spec.observed_dim + spec.missing_dim + spec.n_classes,
            config.encoder_hidden,
            gaussian,
            act,
            drop,
        )
        self.conditional_prior = stochastic_mlp(
            spec.observed_dim, config.prior_hidden, gaussian, act, drop
        )
        self.decoder_body = MLP(spec.observed_dim + latent, config.decoder_hidden, act, drop)
        self.decoder_heads = nn.ModuleDict(
            {
                m: likelihood_head(
                    spec.likelihoods[m], self.decoder_body.out_dim, dim, config.decoder_variance
                )
                for m, dim in spec.missing.items()
            }
        )
        self.classifier = stochastic_mlp(
            latent,
            config.classifier_hidden,
            lambda width: CategoricalHead(width, spec.n_classes, spec.multilabel),
            act,
            drop,
        )
        if config.init_std is not None:
            for layer in self.modules():
                if isinstance(layer, nn.Linear):
                    nn.init.normal_(layer.weight, 0.0, config.init_std)
                    nn.init.zeros_(layer.bias)

    def decode(self, x_observed: torch.Tensor, z: torch.Tensor) -> dict:
        """p(xM | xO, z): modality name -> distribution."""
        h = self.decoder_body(torch.cat([x_observed, z], dim=1))
        return {m: head(h) for m, head in self.decoder_heads.items()}

    def posterior(self, batch: Batch) -> Independent:
        x_observed = concat(batch, self.spec.observed)
        x_missing = concat(batch, self.spec.missing)
        labels = one_hot_labels(batch["y"], self.spec)
        return self.encoder(torch.cat([x_observed, x_missing, labels], dim=1))

    def loss(
        self, batch: Batch, progress: Progress | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        config = self.config
        x_observed = concat(batch, self.spec.observed)
        q = self.posterior(batch)
        p = self.conditional_prior(x_observed)
        noise = torch.randn_like(q.base_dist.loc)
        z_q = q.base_dist.loc + q.base_dist.scale * noise
        prior_noise = noise if config.shared_noise else torch.randn_like(noise)
        z_p = p.base_dist.loc + p.base_dist.scale * prior_noise

        decoded = self.decode(x_observed, z_q)
        log_lik = sum(decoded[m].log_prob(batch[m]) for m in self.spec.missing)
        if config.classifier_input == "prior_sample":
            z_classifier = z_p
        elif config.classifier_input == "prior_mean":
            z_classifier = p.base_dist.loc
        else:
            z_classifier = z_q
        log_py = self.classifier(z_classifier).log_prob(batch["y"])
        kl = official_cmmd_kl(q, p) if config.kl == "official" else kl_divergence(q, p)
        mmd_qp = mmd(z_q, z_p, config.mmd_bandwidth)

        # Each batch mean once, for the loss and its reported parts.
        reconstruction, classification_mean, kl_mean = -log_lik.mean(), log_py.mean(), kl.mean()
        classification = log_py.sum() if config.class_loss == "sum" else classification_mean
        loss = (
            reconstruction
            - config.alpha * classification
            + config.omega * kl_mean
            + (1 - config.omega) * config.lambda_mmd * mmd_qp
        )
        return loss, {
            "reconstruction": reconstruction,
            "classification": -classification_mean,
            "kl": kl_mean,
            "mmd": mmd_qp,
        }


class CMMD(LatentMeanModel[CMMDConfig, CMMDNetwork]):
    """Conditional multimodal discriminative model (paper Sec. 3; defaults from App. C, MNIST;
    ``preset`` "paper" or "official", see the module's docstring)."""

    name = "cmmd"
    capabilities = frozenset({"classify", "generate", "posteriors"})

    def latent_mean(self, batch: Batch) -> torch.Tensor:
        """The prior mean E[z | xO], (b, latent_dim); ``represent`` returns it, ``generate``
        decodes it and ``predict_proba`` classifies it."""
        return self.module_.conditional_prior(concat(batch, self.spec_.observed)).base_dist.loc

    def decode_missing(self, batch: Batch, z: torch.Tensor) -> dict[str, Distribution]:
        """p(xM | xO, z) per missing modality."""
        return self.module_.decode(concat(batch, self.spec_.observed), z)

    def predict_proba(self, xO: Arrays) -> np.ndarray:
        """p(y | z = E[z | xO]), (n, n_classes)."""
        return self.batched(
            lambda b: class_probabilities(self.module_.classifier(self.latent_mean(b))), xO
        )

    def batch_posteriors(self, batch: Batch) -> PosteriorTensors:
        """z|xO: the conditional prior; z|xM: the encoder q(z|xO,xM,y); decoder log-variances of
        the Gaussian missing modalities at z = E[z | xO]."""
        x_observed = concat(batch, self.spec_.observed)
        prior_mean, prior_logvar = gaussian_posterior(self.module_.conditional_prior(x_observed))
        decoded = self.module_.decode(x_observed, prior_mean)
        return PosteriorTensors(
            (prior_mean, prior_logvar),
            gaussian_posterior(self.module_.posterior(batch)),
            gaussian_logvars(decoded, self.spec_.gaussian_missing),
        )
