"""CMMD (paper Eq. 5 and Fig. 1).

    encoder       q(z | xO, xM, y)   Gaussian
    prior         p(z | xO)          Gaussian, conditioned on the observed modalities
    decoder       p(xM | xO, z)      Gaussian (learned or fixed variance) or Bernoulli per modality
    classifier    p(y | z)           fed with z ~ p(z | xO) in training and at test (Fig. 1)

Loss per batch (minimised), with z_q ~ q and z_p ~ p:

    - E[log p(xM | xO, z_q)] - alpha E[log p(y | z_p)]
    + omega KL[q(z | xO, xM, y) || p(z | xO)] + (1 - omega) lambda MMD[z_q, z_p]

omega = 1 (and alpha = 1, classifier_input="posterior") is the negative ELBO of Eq. 1.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.distributions import kl_divergence

from mmbench.divergences import mmd, official_cmmd_kl
from mmbench.model import DataSpec, GaussianStats, PosteriorStats, TorchModel, concat, one_hot_labels
from mmbench.nn import (CategoricalHead, GaussianHead, MLP, class_probabilities, gaussian_posterior,
                        likelihood_head, stochastic_mlp)
from mmbench.views import Views


class CMMDNetwork(nn.Module):
    def __init__(self, spec: DataSpec, model: "CMMD"):
        super().__init__()
        self.spec, self.hp = spec, model
        latent, act, drop = model.latent_dim, model.activation, model.dropout
        gaussian = lambda width: GaussianHead(width, latent, "input")  # noqa: E731
        self.encoder = stochastic_mlp(spec.observed_dim + spec.missing_dim + spec.n_classes,
                                      model.encoder_hidden, gaussian, act, drop)
        self.conditional_prior = stochastic_mlp(spec.observed_dim, model.prior_hidden, gaussian,
                                                act, drop)
        self.decoder_body = MLP(spec.observed_dim + latent, model.decoder_hidden, act, drop)
        self.decoder_heads = nn.ModuleDict({
            m: likelihood_head(spec.likelihoods[m], self.decoder_body.out_dim, dim,
                               model.decoder_variance)
            for m, dim in spec.missing.items()})
        self.classifier = stochastic_mlp(
            latent, model.classifier_hidden,
            lambda width: CategoricalHead(width, spec.n_classes, spec.multilabel), act, drop)

    def decode(self, x_observed: torch.Tensor, z: torch.Tensor) -> dict:
        """p(xM | xO, z): modality name -> distribution."""
        h = self.decoder_body(torch.cat([x_observed, z], dim=1))
        return {m: head(h) for m, head in self.decoder_heads.items()}

    def posterior(self, batch) -> torch.distributions.Distribution:
        x_observed = concat(batch, self.spec.observed)
        x_missing = concat(batch, self.spec.missing)
        labels = one_hot_labels(batch["y"], self.spec)
        return self.encoder(torch.cat([x_observed, x_missing, labels], dim=1))

    def loss(self, batch):
        hp = self.hp
        x_observed = concat(batch, self.spec.observed)
        q = self.posterior(batch)
        p = self.conditional_prior(x_observed)
        noise = torch.randn_like(q.base_dist.loc)
        z_q = q.base_dist.loc + q.base_dist.scale * noise
        prior_noise = noise if hp.shared_noise else torch.randn_like(noise)
        z_p = p.base_dist.loc + p.base_dist.scale * prior_noise

        decoded = self.decode(x_observed, z_q)
        log_lik = sum(decoded[m].log_prob(batch[m]) for m in self.spec.missing)
        z_classifier = z_p if hp.classifier_input == "prior" else z_q
        log_py = self.classifier(z_classifier).log_prob(batch["y"])
        kl = official_cmmd_kl(q, p) if hp.kl == "official" else kl_divergence(q, p)
        mmd_qp = mmd(z_q, z_p, hp.mmd_bandwidth)

        classification = log_py.sum() if hp.class_loss == "sum" else log_py.mean()
        loss = (-log_lik.mean() - hp.alpha * classification + hp.omega * kl.mean()
                + (1 - hp.omega) * hp.lambda_mmd * mmd_qp)
        return loss, {"reconstruction": -log_lik.mean(), "classification": -log_py.mean(),
                      "kl": kl.mean(), "mmd": mmd_qp}


class CMMD(TorchModel):
    """Conditional multimodal discriminative model (paper Sec. 3; defaults from App. C, MNIST).

    omega: weight of the term-by-term KL; 1 - omega weights the MMD (0 <= omega <= 1).
    alpha: weight of the classification log-likelihood (paper: 10).
    lambda_mmd: scale of the MMD term (paper: 1000).
    latent_dim, *_hidden: layer sizes; activation, dropout: of every hidden layer.
    decoder_variance: "input" (sigma^2 = f(xO, z), paper Eq. 6), "shared" (one learned variance
        per output dimension, official code) or a float (fixed variance, e.g. 0.01 in Sec. 4.4).
    kl: "paper" (exact Gaussian KL) or "official" (the official code's, d/2 when q = p).
    class_loss: "mean" over the batch (paper) or "sum" (official: alpha x batch size in effect).
    classifier_input: "prior" (Fig. 1) or "posterior" (z ~ q, the plain ELBO of Eq. 1).
    shared_noise: prior and posterior samples use the same noise draw (official code).
    mmd_bandwidth: Gaussian kernel scale; None means latent_dim^2 (official code).
    """

    name = "cmmd"
    capabilities = frozenset({"classify", "generate", "posteriors"})

    def __init__(self, omega: float = 0.5, alpha: float = 10.0, lambda_mmd: float = 1000.0,
                 latent_dim: int = 50, encoder_hidden: Sequence[int] = (2500, 2500, 2500),
                 prior_hidden: Sequence[int] = (1024, 1024, 1024),
                 decoder_hidden: Sequence[int] = (1024, 1024, 1024),
                 classifier_hidden: Sequence[int] = (50, 50), activation: str = "softplus",
                 dropout: float = 0.2, decoder_variance: str | float = "input",
                 kl: str = "paper", class_loss: str = "mean", classifier_input: str = "prior",
                 shared_noise: bool = True, mmd_bandwidth: float | None = None):
        if not 0.0 <= omega <= 1.0:
            raise ValueError(f"cmmd: omega must lie in [0, 1], got {omega}")
        for option, value, allowed in (("kl", kl, ("paper", "official")),
                                       ("class_loss", class_loss, ("mean", "sum")),
                                       ("classifier_input", classifier_input, ("prior", "posterior"))):
            if value not in allowed:
                raise ValueError(f"cmmd: {option}={value!r}; allowed: {allowed}")
        self.omega, self.alpha, self.lambda_mmd = omega, alpha, lambda_mmd
        self.latent_dim = latent_dim
        self.encoder_hidden, self.prior_hidden = tuple(encoder_hidden), tuple(prior_hidden)
        self.decoder_hidden, self.classifier_hidden = tuple(decoder_hidden), tuple(classifier_hidden)
        self.activation, self.dropout = activation, dropout
        self.decoder_variance, self.kl, self.class_loss = decoder_variance, kl, class_loss
        self.classifier_input, self.shared_noise = classifier_input, shared_noise
        self.mmd_bandwidth = mmd_bandwidth

    def build(self, spec: DataSpec) -> CMMDNetwork:
        return CMMDNetwork(spec, self)

    def _prior_mean(self, batch) -> torch.Tensor:
        return self.module_.conditional_prior(concat(batch, self.spec_.observed)).base_dist.loc

    def represent(self, xO) -> np.ndarray:
        """The prior mean E[z | xO], (n, latent_dim)."""
        return self.batched(self._prior_mean, xO)

    def predict_proba(self, xO) -> np.ndarray:
        """p(y | z = E[z | xO]), (n, n_classes)."""
        return self.batched(
            lambda b: class_probabilities(self.module_.classifier(self._prior_mean(b))), xO)

    def generate(self, xO) -> dict[str, np.ndarray]:
        """Mean of p(xM | xO, z = E[z | xO]) per missing modality."""
        def decode_means(batch):
            decoded = self.module_.decode(concat(batch, self.spec_.observed), self._prior_mean(batch))
            return {m: d.mean for m, d in decoded.items()}
        return self.batched(decode_means, xO)

    def posteriors(self, views: Views) -> PosteriorStats:
        """z|xO: the conditional prior; z|xM: the encoder q(z|xO,xM,y); decoder log-variances of
        the Gaussian missing modalities at z = E[z | xO]."""
        gaussian_missing = self.spec_.gaussian_missing

        def stats(batch):
            batch = dict(batch, y=batch["y"] if self.spec_.multilabel else batch["y"].long())
            x_observed = concat(batch, self.spec_.observed)
            prior_mean, prior_logvar = gaussian_posterior(self.module_.conditional_prior(x_observed))
            post_mean, post_logvar = gaussian_posterior(self.module_.posterior(batch))
            out = {"prior_mean": prior_mean, "prior_logvar": prior_logvar,
                   "post_mean": post_mean, "post_logvar": post_logvar}
            if gaussian_missing:
                decoded = self.module_.decode(x_observed, prior_mean)
                out["decoder_logvar"] = torch.cat(
                    [gaussian_posterior(decoded[m])[1] for m in gaussian_missing], dim=1)
            return out

        out = self.batched(stats, {**views.data, "y": views.labels})
        return PosteriorStats(GaussianStats(out["prior_mean"], out["prior_logvar"]),
                              GaussianStats(out["post_mean"], out["post_logvar"]),
                              out.get("decoder_logvar"))
