"""Variational CCA and VCCA-private (Wang, Yan, Lee & Livescu 2016).

View 1 is the observed modalities xO (concatenated), view 2 the missing ones xM.

    VCCA          q(z | x1);  p(x1 | z), p(x2 | z);  p(z) = N(0, I)
    VCCA-private  adds q(h1 | x1), q(h2 | x2) with N(0, I) priors; p(x1 | z, h1), p(x2 | z, h2)

Loss per batch (minimised), one reparameterised sample of each latent:

    - E[log p(x1 | z, h1) + log p(x2 | z, h2)] + KL[q(z|x1) || p(z)] + KL[q(h1|x1) || p(h1)]
    + KL[q(h2|x2) || p(h2)]

(without the h terms for VCCA), batch mean. Each view has one decoder: an MLP on [z, h] and a
likelihood head per modality of the view (``Modality.likelihood``: Bernoulli, or Gaussian with a
learned or fixed variance). Dropout as in the paper: on every hidden layer (``dropout``) and,
optionally, on the sampled latents fed to the decoders (``latent_dropout``).

Test time (no classifier of its own; scored by the suite's downstream protocol on E[z | x1]):
- ``generate(xO)``: the view-2 decoder's means at z = E[z | x1] (and h2 = 0, its prior mean);
- ``posteriors``: z|xO = q(z | x1); z|xM = q(h2 | x2) for VCCA-private (the CMMD paper's App. E:
  "the inference private distribution"), None for VCCA; the decoder log-variances of the Gaussian
  missing modalities at z = E[z | x1] and, for VCCA-private, h2 = E[h2 | x2] -- the paper notes
  that its VCCA decoder variances are "generated using the modality xM".
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.distributions import kl_divergence

from mmbench.model import DataSpec, GaussianStats, PosteriorStats, TorchModel, concat
from mmbench.nn import (MLP, Dropout, GaussianHead, gaussian_posterior, likelihood_head,
                        standard_normal_like, stochastic_mlp)
from mmbench.views import Views

DecoderVariance = str | float | Mapping[str, str | float]


class ViewDecoder(nn.Module):
    """p(x_m | code) for the modalities of one view: a shared MLP and a head per modality."""

    def __init__(self, code_dim: int, hidden: Sequence[int], dims: Mapping[str, int],
                 likelihoods: Mapping[str, str], variances: Mapping[str, str | float],
                 act: str, dropout: float):
        super().__init__()
        self.body = MLP(code_dim, hidden, act, dropout)
        self.heads = nn.ModuleDict({
            m: likelihood_head(likelihoods[m], self.body.out_dim, dim, variances[m])
            for m, dim in dims.items()})

    def forward(self, code: torch.Tensor) -> dict[str, torch.distributions.Distribution]:
        h = self.body(code)
        return {m: head(h) for m, head in self.heads.items()}


class VCCANetwork(nn.Module):
    def __init__(self, spec: DataSpec, model: "VCCA"):
        super().__init__()
        self.spec = spec
        self.private_dim = model.private_dim
        act, drop = model.activation, model.dropout
        decoder_hidden = model.hidden[::-1] if model.decoder_hidden is None else model.decoder_hidden
        variances = spec.per_modality(model.decoder_variance, "shared",
                                      f"{model.name}: decoder_variance")
        # The views that exist: x1 = the observed modalities, x2 = the missing ones (if any).
        self.views = {"x1": spec.observed, **({"x2": spec.missing} if spec.missing else {})}

        def gaussian(latent):
            return lambda width: GaussianHead(width, latent, "input")

        self.shared_encoder = stochastic_mlp(spec.observed_dim, model.hidden,
                                             gaussian(model.latent_dim), act, drop)
        if self.private_dim:
            self.private_encoders = nn.ModuleDict({
                view: stochastic_mlp(sum(spec.dims[m] for m in names), model.hidden,
                                     gaussian(self.private_dim), act, drop)
                for view, names in self.views.items()})
        self.decoders = nn.ModuleDict({
            view: ViewDecoder(model.latent_dim + self.private_dim, decoder_hidden,
                              {m: spec.dims[m] for m in names}, spec.likelihoods, variances,
                              act, drop)
            for view, names in self.views.items()})
        self.latent_dropout = Dropout(model.latent_dropout)

    def shared_posterior(self, batch):
        return self.shared_encoder(concat(batch, self.spec.observed))

    def private_posterior(self, batch, view: str):
        return self.private_encoders[view](concat(batch, self.views[view]))

    def loss(self, batch):
        q_z = self.shared_posterior(batch)
        z = q_z.rsample()
        kl = {"kl_z": kl_divergence(q_z, standard_normal_like(z))}
        log_lik = torch.zeros_like(kl["kl_z"])
        for view, names in self.views.items():
            code = z
            if self.private_dim:
                q_h = self.private_posterior(batch, view)
                h = q_h.rsample()
                kl[f"kl_h{view[1:]}"] = kl_divergence(q_h, standard_normal_like(h))
                code = torch.cat([z, h], dim=1)
            decoded = self.decoders[view](self.latent_dropout(code))
            log_lik = log_lik + sum(decoded[m].log_prob(batch[m]) for m in names)
        total_kl = sum(kl.values())
        loss = (total_kl - log_lik).mean()
        return loss, {"reconstruction": -log_lik.mean(), **{k: v.mean() for k, v in kl.items()}}

    def decode_missing(self, z: torch.Tensor, h2: torch.Tensor | None = None) -> dict:
        """p(x2 | z, h2) per missing modality; h2 defaults to its prior mean 0."""
        if not self.spec.missing:
            return {}
        if self.private_dim:
            h2 = torch.zeros(z.shape[0], self.private_dim, device=z.device) if h2 is None else h2
            z = torch.cat([z, h2], dim=1)
        return self.decoders["x2"](z)


class VCCA(TorchModel):
    """Variational CCA: z inferred from view 1 (xO) only, decoders for both views.

    latent_dim: size of z (Wang et al.: 40 on MNIST, 70 on XRMB). hidden: hidden sizes of every
    encoder; decoder_hidden: of every decoder (None: ``hidden`` reversed). activation: of every
    hidden layer. dropout: on every hidden layer (the paper tunes 0-0.4); latent_dropout: on the
    sampled latents fed to the decoders.
    decoder_variance: of Gaussian modalities: "shared" (learned, one per feature; the paper's
        MNIST view 2), "input" (a function of the code), a float (fixed variance), or a mapping
        modality name -> one of these, e.g. XRMB's fixed stds 1.0 and 0.1: {x1: 1.0, x2: 0.01}.
    """

    name = "vcca"
    capabilities = frozenset({"generate", "posteriors"})
    private_dim = 0  # no private latents (see VCCAPrivate)

    def __init__(self, latent_dim: int = 40, hidden: Sequence[int] = (1024, 1024, 1024),
                 decoder_hidden: Sequence[int] | None = None, activation: str = "relu",
                 dropout: float = 0.2, latent_dropout: float = 0.0,
                 decoder_variance: DecoderVariance = "shared"):
        if latent_dim < 1:
            raise ValueError(f"{self.name}: latent_dim must be >= 1, got {latent_dim}")
        for option, value in (("dropout", dropout), ("latent_dropout", latent_dropout)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{self.name}: {option} must lie in [0, 1), got {value}")
        self.latent_dim, self.hidden = latent_dim, tuple(hidden)
        self.decoder_hidden = None if decoder_hidden is None else tuple(decoder_hidden)
        self.activation, self.dropout, self.latent_dropout = activation, dropout, latent_dropout
        self.decoder_variance = (dict(decoder_variance) if isinstance(decoder_variance, Mapping)
                                 else decoder_variance)

    def build(self, spec: DataSpec) -> VCCANetwork:
        return VCCANetwork(spec, self)

    def _shared_mean(self, batch) -> torch.Tensor:
        return self.module_.shared_posterior(batch).base_dist.loc

    def represent(self, xO) -> np.ndarray:
        """E[z | x1], (n, latent_dim)."""
        return self.batched(self._shared_mean, xO)

    def generate(self, xO) -> dict[str, np.ndarray]:
        """Means of p(x2 | z = E[z | x1], h2 = 0) per missing modality."""
        return self.batched(
            lambda b: {m: d.mean for m, d in self.module_.decode_missing(self._shared_mean(b)).items()},
            xO)

    def posteriors(self, views: Views) -> PosteriorStats:
        """z|xO = q(z | x1); z|xM = q(h2 | x2) (VCCA-private) or None (VCCA); decoder
        log-variances of the Gaussian missing modalities (see the module's docstring)."""
        private = bool(self.module_.private_dim) and bool(self.spec_.missing)
        gaussian_missing = self.spec_.gaussian_missing

        def stats(batch):
            mean, logvar = gaussian_posterior(self.module_.shared_posterior(batch))
            out = {"mean_z": mean, "logvar_z": logvar}
            h2 = None
            if private:
                h2, out["logvar_h2"] = gaussian_posterior(self.module_.private_posterior(batch, "x2"))
                out["mean_h2"] = h2
            if gaussian_missing:
                decoded = self.module_.decode_missing(mean, h2)
                out["decoder_logvar"] = torch.cat(
                    [gaussian_posterior(decoded[m])[1] for m in gaussian_missing], dim=1)
            return out

        out = self.batched(stats, views.data)
        return PosteriorStats(GaussianStats(out["mean_z"], out["logvar_z"]),
                              GaussianStats(out["mean_h2"], out["logvar_h2"]) if private else None,
                              out.get("decoder_logvar"))


class VCCAPrivate(VCCA):
    """VCCA with private latents h1 ~ q(h1 | x1) and h2 ~ q(h2 | x2).

    The hyper-parameters of :class:`VCCA`, and
    private_dim: size of each private latent (Wang et al.: 30 on MNIST, 10 on XRMB).
    representation: what ``represent`` returns: "shared" (E[z | x1], the paper's choice) or
        "shared+private" ([E[z | x1], E[h1 | x1]]).
    """

    name = "vcca_private"

    def __init__(self, latent_dim: int = 40, private_dim: int = 30,
                 hidden: Sequence[int] = (1024, 1024, 1024),
                 decoder_hidden: Sequence[int] | None = None, activation: str = "relu",
                 dropout: float = 0.2, latent_dropout: float = 0.0,
                 decoder_variance: DecoderVariance = "shared", representation: str = "shared"):
        super().__init__(latent_dim, hidden, decoder_hidden, activation, dropout, latent_dropout,
                         decoder_variance)
        if private_dim < 1:
            raise ValueError(f"vcca_private: private_dim must be >= 1, got {private_dim}")
        if representation not in ("shared", "shared+private"):
            raise ValueError(f"vcca_private: representation={representation!r}; allowed: "
                             "'shared', 'shared+private'")
        self.private_dim, self.representation = private_dim, representation

    def represent(self, xO) -> np.ndarray:
        """E[z | x1], (n, latent_dim), or [E[z | x1], E[h1 | x1]], (n, latent_dim + private_dim)."""
        if self.representation == "shared":
            return super().represent(xO)
        return self.batched(lambda b: torch.cat(
            [self._shared_mean(b), self.module_.private_posterior(b, "x1").base_dist.loc], 1), xO)
