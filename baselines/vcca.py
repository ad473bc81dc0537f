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

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeAlias

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.distributions import Independent, kl_divergence

from mmbench.config import (
    DecoderHidden,
    DecoderVariance,
    EncoderHidden,
    Fraction,
    HiddenActivation,
    ModelConfig,
    PositiveInt,
    per_modality,
)
from mmbench.model import Arrays, DataSpec, LatentMeanModel, PosteriorTensors, concat
from mmbench.nn import (
    MLP,
    Dropout,
    GaussianHead,
    decoder_layers,
    gaussian_logvars,
    gaussian_posterior,
    likelihood_head,
    standard_normal_like,
    stochastic_mlp,
)
from mmbench.trainer import Batch, Progress

if TYPE_CHECKING:  # mypy cannot evaluate the calls below: the values they validate to
    DecoderVariances: TypeAlias = (
        Literal["input", "shared"] | float | dict[str, Literal["input", "shared"] | float]
    )
else:
    DecoderVariances = per_modality(DecoderVariance)


class VCCAConfig(ModelConfig):
    """VCCA's hyper-parameters (Wang et al.: latent_dim 40 on MNIST, 70 on XRMB)."""

    test_params: ClassVar[dict[str, Any]] = {"latent_dim": 6, "hidden": (32,)}

    latent_dim: PositiveInt = Field(40, description="size of the shared latent z")
    hidden: EncoderHidden = (1024, 1024, 1024)
    decoder_hidden: DecoderHidden = None
    activation: HiddenActivation = "relu"
    dropout: Fraction = Field(
        0.2, description="dropout rate of every hidden layer (the paper tunes 0-0.4)"
    )
    latent_dropout: Fraction = Field(
        0.0, description="dropout rate on the sampled latents fed to the decoders"
    )
    decoder_variance: DecoderVariances = Field(
        "shared",
        description='variance of Gaussian modalities: "shared" (learned, one per '
        'feature; the paper\'s MNIST view 2), "input" (a function of the '
        "code) or a fixed variance; per modality e.g. XRMB's fixed stds "
        "1.0 and 0.1: {x1: 1.0, x2: 0.01}",
    )


class VCCAPrivateConfig(VCCAConfig):
    """VCCA's hyper-parameters, and the private latents' (Wang et al.: private_dim 30 on MNIST,
    10 on XRMB)."""

    test_params: ClassVar[dict[str, Any]] = {**VCCAConfig.test_params, "private_dim": 4}

    private_dim: PositiveInt = Field(30, description="size of each private latent h1, h2")
    representation: Literal["shared", "shared+private"] = Field(
        "shared",
        description='what represent returns: "shared" (E[z | x1], the paper\'s choice) '
        'or "shared+private" ([E[z | x1], E[h1 | x1]])',
    )


class ViewDecoder(nn.Module):
    """p(x_m | code) for the modalities of one view: a shared MLP and a head per modality."""

    def __init__(
        self,
        code_dim: int,
        hidden: Sequence[int],
        dims: Mapping[str, int],
        likelihoods: Mapping[str, str],
        variances: Mapping[str, str | float],
        act: str,
        dropout: float,
    ):
        super().__init__()
        self.body = MLP(code_dim, hidden, act, dropout)
        self.heads = nn.ModuleDict(
            {
                m: likelihood_head(likelihoods[m], self.body.out_dim, dim, variances[m])
                for m, dim in dims.items()
            }
        )

    def forward(self, code: torch.Tensor) -> dict[str, torch.distributions.Distribution]:
        h = self.body(code)
        return {m: head(h) for m, head in self.heads.items()}


class VCCANetwork(nn.Module):
    def __init__(self, spec: DataSpec, config: VCCAConfig):
        super().__init__()
        self.spec = spec
        self.private_dim = config.private_dim if isinstance(config, VCCAPrivateConfig) else 0
        act, drop = config.activation, config.dropout
        decoder_hidden = decoder_layers(config.hidden, config.decoder_hidden)
        variances = spec.per_modality(config.decoder_variance, "shared", "decoder_variance")
        # The views that exist: x1 = the observed modalities, x2 = the missing ones (if any).
        self.views = {"x1": spec.observed, **({"x2": spec.missing} if spec.missing else {})}

        def gaussian(latent: int) -> Callable[[int], GaussianHead]:
            return lambda width: GaussianHead(width, latent, "input")

        self.shared_encoder = stochastic_mlp(
            spec.observed_dim, config.hidden, gaussian(config.latent_dim), act, drop
        )
        if self.private_dim:
            self.private_encoders = nn.ModuleDict(
                {
                    view: stochastic_mlp(
                        sum(spec.dims[m] for m in names),
                        config.hidden,
                        gaussian(self.private_dim),
                        act,
                        drop,
                    )
                    for view, names in self.views.items()
                }
            )
        self.decoders = nn.ModuleDict(
            {
                view: ViewDecoder(
                    config.latent_dim + self.private_dim,
                    decoder_hidden,
                    {m: spec.dims[m] for m in names},
                    spec.likelihoods,
                    variances,
                    act,
                    drop,
                )
                for view, names in self.views.items()
            }
        )
        self.latent_dropout = Dropout(config.latent_dropout)

    def shared_posterior(self, batch: Batch) -> Independent:
        return self.shared_encoder(concat(batch, self.spec.observed))

    def private_posterior(self, batch: Batch, view: str) -> Independent:
        return self.private_encoders[view](concat(batch, self.views[view]))

    def loss(
        self, batch: Batch, progress: Progress | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        q_z = self.shared_posterior(batch)
        z = q_z.rsample()
        kl = {"kl_z": kl_divergence(q_z, standard_normal_like(z))}
        log_liks = []
        for view, names in self.views.items():
            code = z
            if self.private_dim:
                q_h = self.private_posterior(batch, view)
                h = q_h.rsample()
                kl[f"kl_h{view[1:]}"] = kl_divergence(q_h, standard_normal_like(h))
                code = torch.cat([z, h], dim=1)
            decoded = self.decoders[view](self.latent_dropout(code))
            log_liks += [decoded[m].log_prob(batch[m]) for m in names]
        log_lik = sum(log_liks[1:], log_liks[0])
        # Each batch mean once, for the loss and its reported parts.
        parts = {"reconstruction": -log_lik.mean(), **{k: v.mean() for k, v in kl.items()}}
        reconstruction, *kl_means = parts.values()
        return sum(kl_means, reconstruction), parts

    def decode_missing(self, z: torch.Tensor, h2: torch.Tensor | None = None) -> dict:
        """p(x2 | z, h2) per missing modality; h2 defaults to its prior mean 0."""
        if not self.spec.missing:
            return {}
        if self.private_dim:
            h2 = torch.zeros(z.shape[0], self.private_dim, device=z.device) if h2 is None else h2
            z = torch.cat([z, h2], dim=1)
        return self.decoders["x2"](z)


class VCCA(LatentMeanModel[VCCAConfig, VCCANetwork]):
    """Variational CCA: z inferred from view 1 (xO) only, decoders for both views."""

    name = "vcca"
    capabilities = frozenset({"generate", "posteriors"})

    def latent_mean(self, batch: Batch) -> torch.Tensor:
        """E[z | x1], (b, latent_dim); ``represent`` returns it and ``generate`` decodes it."""
        return self.module_.shared_posterior(batch).base_dist.loc

    def decode_missing(
        self, batch: Batch, z: torch.Tensor
    ) -> dict[str, torch.distributions.Distribution]:
        """p(x2 | z, h2 = 0) per missing modality."""
        return self.module_.decode_missing(z)

    def batch_posteriors(self, batch: Batch) -> PosteriorTensors:
        """z|xO = q(z | x1); z|xM = q(h2 | x2) (VCCA-private) or None (VCCA); decoder
        log-variances of the Gaussian missing modalities (see the module's docstring)."""
        mean, logvar = gaussian_posterior(self.module_.shared_posterior(batch))
        private = None
        if self.module_.private_dim and self.spec_.missing:
            private = gaussian_posterior(self.module_.private_posterior(batch, "x2"))
        decoded = self.module_.decode_missing(mean, None if private is None else private[0])
        return PosteriorTensors(
            (mean, logvar), private, gaussian_logvars(decoded, self.spec_.gaussian_missing)
        )


class VCCAPrivate(VCCA):
    """VCCA with private latents h1 ~ q(h1 | x1) and h2 ~ q(h2 | x2)."""

    name = "vcca_private"
    config_class = VCCAPrivateConfig
    config: VCCAPrivateConfig

    def represent(self, xO: Arrays) -> np.ndarray:
        """E[z | x1], (n, latent_dim), or [E[z | x1], E[h1 | x1]], (n, latent_dim + private_dim)."""
        if self.config.representation == "shared":
            return super().represent(xO)
        return self.batched(
            lambda b: torch.cat(
                [self.latent_mean(b), self.module_.private_posterior(b, "x1").base_dist.loc], 1
            ),
            xO,
        )
