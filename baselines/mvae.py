"""Multimodal VAE (Wu & Goodman 2018): a product of Gaussian experts with a prior expert.

Every modality m has an encoder q(z | x_m) = N(mu_m, var_m) and a decoder p(x_m | z) (Bernoulli
or Gaussian, from ``Modality.likelihood``). The posterior given any subset s of the modalities is
the product of N(0, I) and the experts of s (:func:`mmbench.experts.product_of_experts`).

Loss per batch (minimised): the sum over the subsets s of a batch of the batch-mean negative ELBO

    - sum_{m in s} lambda_m E_{q(z|x_s)}[log p(x_m | z)] + beta KL[q(z | x_s) || N(0, I)]

over the joint subset (all modalities), every single modality, and, for M > 2 modalities,
``n_random_subsets`` random subsets of 2..M-1 modalities drawn anew for each batch (the paper's
sub-sampled objective). Each modality is encoded once per batch; the subsets' products are formed
by masking the stacked experts, and each decoder runs once on the samples of the subsets that
contain its modality.

KL annealing: beta rises linearly from 1/(A N) to 1 over the first A = ``annealing_epochs``
epochs of N mini-batches, as in the authors' code: at optimisation step s (from 0, over the whole
fit; the trainer's :class:`mmbench.trainer.Progress`), beta = min((s + 1) / (A N), 1). Without a
progress (the validation loss) beta = 1, the true bound, so that early stopping compares the same
objective throughout (the authors' test loss also uses beta = 1); the validation loss (evaluation
mode) also leaves out the random subsets.

Test time (no classifier of its own; scored by the suite's downstream protocol):
- ``represent(xO)``: the mean of the product posterior given xO only (prior expert included);
- ``generate(xO)``: the decoders' means at that posterior mean;
- ``posteriors``: z|xO is that product posterior; z|xM is, by default, the product posterior given
  the missing modalities only ("missing"): the CMMD paper's App. E names "the joint PoE
  posterior" for both, and its Sec. 4.2 reads the curves as MVAE "conditioned on the modality xO"
  and "conditioned on view xM" and finds that MVAE "fails to learn joint representation" from
  their divergence, which rules out one distribution for both. ``z_given_xM="joint"`` takes the
  product of all modalities instead.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field

from mmbench.config import (
    Activation,
    DecoderHidden,
    EncoderHidden,
    GaussianModalityVariance,
    HiddenDropout,
    LatentDim,
    ModalityWeights,
    ModelConfig,
    NonNegativeInt,
)
from mmbench.divergences import gaussian_kl_per_dim
from mmbench.experts import product_of_experts
from mmbench.model import DataSpec, LatentMeanModel, PosteriorTensors
from mmbench.multimodal_vae import (
    MultimodalVAENetwork,
    gaussian_experts,
    stack_experts,
)
from mmbench.nn import gaussian_logvars, gaussian_posterior
from mmbench.trainer import Batch, Progress


class MVAEConfig(ModelConfig):
    """MVAE's hyper-parameters (the authors' MNIST: latent_dim 64, 2 x 512 swish, no dropout)."""

    test_params: ClassVar[dict[str, Any]] = {"latent_dim": 6, "hidden": (32,)}

    latent_dim: LatentDim = 64
    hidden: EncoderHidden = (512, 512)
    decoder_hidden: DecoderHidden = None
    activation: Activation = Field(
        "silu", description='activation of every hidden layer ("silu" is the authors\' Swish)'
    )
    dropout: HiddenDropout = 0.0
    decoder_variance: GaussianModalityVariance = "shared"
    annealing_epochs: NonNegativeInt = Field(
        200,
        description="epochs over which the KL weight rises linearly to 1 (authors: 200 of "
        "500; 0: no annealing)",
    )
    n_random_subsets: NonNegativeInt = Field(
        2, description="random subsets of modalities per batch, for more than 2 modalities"
    )
    likelihood_weights: ModalityWeights = None
    z_given_xM: Literal["missing", "joint"] = Field(
        "missing",
        description='the posterior reported as z|xM: "missing" (the product of the '
        'missing modalities\' experts and the prior) or "joint" (of all)',
    )


class MVAENetwork(MultimodalVAENetwork):
    config: MVAEConfig

    def __init__(self, spec: DataSpec, config: MVAEConfig):
        super().__init__(spec, config)
        self.encoders = gaussian_experts(
            spec.dims, config.hidden, config.latent_dim, config.activation, config.dropout
        )
        self.decoders = self.data_likelihood_decoders()
        # The fixed subsets: all modalities, then each one alone.
        n = len(self.names)
        self.fixed_subsets = [tuple(range(n))] + ([(j,) for j in range(n)] if n > 1 else [])

    def experts(self, batch: Batch, names: Collection[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar) of q(z | x_m) for the modalities ``names``, each
        (len(names), b, latent_dim)."""
        return stack_experts([gaussian_posterior(self.encoders[m](batch[m])) for m in names])

    def random_subsets(self) -> list[tuple[int, ...]]:
        """``n_random_subsets`` subsets of 2..M-1 modality indices (training, M > 2 only)."""
        n = len(self.names)
        if n <= 2 or not self.training:
            return []
        sizes = torch.randint(2, n, (self.config.n_random_subsets,)).tolist()
        return [tuple(sorted(torch.randperm(n)[:size].tolist())) for size in sizes]

    def kl_weight(self, progress: Progress | None) -> float:
        """beta: (step + 1) / (annealing_epochs x steps per epoch), at most 1, in training; 1
        without a progress (evaluation) or without annealing."""
        epochs = self.config.annealing_epochs
        if progress is None or epochs == 0:
            return 1.0
        return min((progress.step + 1) / (epochs * progress.steps_per_epoch), 1.0)

    def subset_indices(
        self, subsets: Sequence[tuple[int, ...]], device: torch.device
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The (S, M) membership mask of the subsets and, per modality, the indices of the
        subsets that contain it, on ``device``. Built on the host and copied without waiting for
        the device's queue (a blocking copy would be a sync per step on a GPU)."""
        mask = torch.tensor(
            [[float(j in subset) for j in range(len(self.names))] for subset in subsets]
        )
        rows = [
            torch.tensor([s for s, subset in enumerate(subsets) if j in subset])
            for j in range(len(self.names))
        ]
        return (mask.to(device, non_blocking=True), [r.to(device, non_blocking=True) for r in rows])

    def loss(
        self, batch: Batch, progress: Progress | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        subsets = self.fixed_subsets + self.random_subsets()
        mask, rows_of = self.subset_indices(subsets, batch[self.names[0]].device)
        mean, logvar = product_of_experts(*self.experts(batch, self.names), mask)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)  # (S, b, d)
        zeros = torch.zeros_like(mean)
        kl = gaussian_kl_per_dim(mean, logvar, zeros, zeros).sum(-1)  # (S, b)
        # float32 sums also under bfloat16 autocast, where the terms may come in either type
        log_lik = torch.zeros_like(kl, dtype=torch.float32)
        for m, rows in zip(self.names, rows_of):
            decoded = self.decoders[m](z.index_select(0, rows))  # batch (S_m, b)
            term = self.weights[m] * decoded.log_prob(batch[m])
            log_lik = log_lik.index_add(0, rows, term.float())
        # A 0-d tensor filled on the device (no host-to-device copy), float32 like the KL.
        beta = kl.new_full((), self.kl_weight(progress))
        loss = (-log_lik + beta * kl).mean(1).sum()
        return loss, {
            "reconstruction": -log_lik.mean(1).sum(),
            "kl": kl.mean(1).sum(),
            "kl_weight": beta,
            "joint_negative_elbo": (kl[0] - log_lik[0]).mean(),
        }


class MVAE(LatentMeanModel[MVAEConfig, MVAENetwork]):
    """Multimodal VAE with a product-of-experts posterior (Wu & Goodman 2018)."""

    name = "mvae"
    capabilities = frozenset({"generate", "posteriors"})

    def _posterior(self, batch: Batch, names: Collection[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return product_of_experts(*self.module_.experts(batch, names))

    def latent_mean(self, batch: Batch) -> torch.Tensor:
        """Mean of the product posterior given xO (prior expert included), (b, latent_dim);
        ``represent`` returns it and ``generate`` decodes it."""
        return self._posterior(batch, self.spec_.observed)[0]

    def batch_posteriors(self, batch: Batch) -> PosteriorTensors:
        """z|xO: product posterior given xO; z|xM: given xM (or all, see ``z_given_xM``; None
        when the data have no missing modality); decoder log-variances of the Gaussian missing
        modalities at the mean of z|xO."""
        given_xM = (
            self.spec_.missing if self.config.z_given_xM == "missing" else self.spec_.modalities
        )
        mean, logvar = self._posterior(batch, self.spec_.observed)
        gaussian_missing = self.spec_.gaussian_missing
        decoded = {m: self.module_.decoders[m](mean) for m in gaussian_missing}
        return PosteriorTensors(
            (mean, logvar),
            self._posterior(batch, given_xM) if given_xM else None,
            gaussian_logvars(decoded, gaussian_missing),
        )
