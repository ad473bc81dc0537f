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
epochs of N mini-batches, as in the authors' code. The trainer gives the loss no epoch, so the
network counts its own optimisation steps: a ``step`` buffer incremented by every loss computed
in training mode; ``fit`` tells the network N. In evaluation mode (the validation loss) beta = 1,
the true bound, so that early stopping compares the same objective throughout (the authors' test
loss also uses beta = 1); the validation loss also leaves out the random subsets.

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

import math
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from mmbench.divergences import gaussian_kl_per_dim
from mmbench.experts import product_of_experts
from mmbench.model import DataSpec, GaussianStats, PosteriorStats, TorchModel
from mmbench.nn import GaussianHead, gaussian_posterior, likelihood_head, stochastic_mlp
from mmbench.trainer import EpochCallback, FitReport, TrainConfig
from mmbench.views import Views


class MVAENetwork(nn.Module):
    def __init__(self, spec: DataSpec, model: "MVAE", steps_per_epoch: int):
        super().__init__()
        self.spec, self.hp = spec, model
        self.names = spec.modalities
        self.weights = spec.per_modality(model.likelihood_weights or {}, 1.0,
                                         f"{model.name}: likelihood_weights")
        latent, act, drop = model.latent_dim, model.activation, model.dropout
        self.encoders = nn.ModuleDict({
            m: stochastic_mlp(spec.dims[m], model.hidden,
                              lambda w: GaussianHead(w, latent, "input"), act, drop)
            for m in self.names})
        decoder_hidden = model.hidden[::-1] if model.decoder_hidden is None else model.decoder_hidden
        self.decoders = nn.ModuleDict({
            m: stochastic_mlp(latent, decoder_hidden,
                              lambda w, m=m: likelihood_head(spec.likelihoods[m], w, spec.dims[m],
                                                             model.decoder_variance),
                              act, drop)
            for m in self.names})
        self.annealing_steps = model.annealing_epochs * steps_per_epoch
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        # The fixed subsets: all modalities, then each one alone.
        n = len(self.names)
        self.fixed_subsets = [tuple(range(n))] + ([(j,) for j in range(n)] if n > 1 else [])

    def experts(self, batch, names) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar) of q(z | x_m) for the modalities ``names``, each
        (len(names), b, latent_dim)."""
        stats = [gaussian_posterior(self.encoders[m](batch[m])) for m in names]
        return torch.stack([s[0] for s in stats]), torch.stack([s[1] for s in stats])

    def random_subsets(self) -> list[tuple[int, ...]]:
        """``n_random_subsets`` subsets of 2..M-1 modality indices (training, M > 2 only)."""
        n = len(self.names)
        if n <= 2 or not self.training:
            return []
        sizes = torch.randint(2, n, (self.hp.n_random_subsets,)).tolist()
        return [tuple(sorted(torch.randperm(n)[:size].tolist())) for size in sizes]

    def kl_weight(self) -> torch.Tensor:
        """beta: linear from 1/annealing_steps to 1 in training, 1 in evaluation."""
        if not self.training or self.annealing_steps == 0:
            return torch.ones((), device=self.step.device)
        return torch.clamp((self.step + 1).float() / self.annealing_steps, max=1.0)

    def subset_indices(self, subsets) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The (S, M) membership mask of the subsets and, per modality, the indices of the
        subsets that contain it, on the device. Built on the host and copied without waiting for
        the device's queue (a blocking copy would be a sync per step on a GPU)."""
        device = self.step.device
        mask = torch.tensor([[float(j in subset) for j in range(len(self.names))]
                             for subset in subsets])
        rows = [torch.tensor([s for s, subset in enumerate(subsets) if j in subset])
                for j in range(len(self.names))]
        return (mask.to(device, non_blocking=True),
                [r.to(device, non_blocking=True) for r in rows])

    def loss(self, batch):
        subsets = self.fixed_subsets + self.random_subsets()
        mask, rows_of = self.subset_indices(subsets)
        mean, logvar = product_of_experts(*self.experts(batch, self.names), mask)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)           # (S, b, d)
        zeros = torch.zeros_like(mean)
        kl = gaussian_kl_per_dim(mean, logvar, zeros, zeros).sum(-1)          # (S, b)
        log_lik = torch.zeros_like(kl)
        for m, rows in zip(self.names, rows_of):
            decoded = self.decoders[m](z.index_select(0, rows))               # batch (S_m, b)
            log_lik = log_lik.index_add(0, rows, self.weights[m] * decoded.log_prob(batch[m]))
        beta = self.kl_weight()
        if self.training:
            self.step += 1
        loss = (-log_lik + beta * kl).mean(1).sum()
        return loss, {"reconstruction": -log_lik.mean(1).sum(), "kl": kl.mean(1).sum(),
                      "kl_weight": beta, "joint_negative_elbo": (kl[0] - log_lik[0]).mean()}

    def decode_means(self, z: torch.Tensor, names) -> dict[str, torch.Tensor]:
        return {m: self.decoders[m](z).mean for m in names}


class MVAE(TorchModel):
    """Multimodal VAE with a product-of-experts posterior (Wu & Goodman 2018).

    latent_dim: size of z (the authors' MNIST: 64). hidden: hidden sizes of every encoder;
    decoder_hidden: of every decoder (None: ``hidden`` reversed). activation: of every hidden
    layer ("silu" is the authors' Swish). dropout: on every hidden layer (authors: none).
    decoder_variance: of Gaussian modalities: "shared" (one learned variance per feature),
        "input" (a function of z) or a float (fixed variance).
    annealing_epochs: epochs over which the KL weight rises linearly to 1 (authors: 200 of 500;
        0: no annealing). n_random_subsets: random subsets per batch for M > 2 modalities.
    likelihood_weights: lambda_m per modality name (default 1 each).
    z_given_xM: the posterior that ``posteriors`` reports as z|xM: "missing" (product of the
        missing modalities' experts and the prior) or "joint" (of all modalities).
    """

    name = "mvae"
    capabilities = frozenset({"generate", "posteriors"})
    # Set by ``fit``; a network rebuilt from a checkpoint does not train, so needs none.
    steps_per_epoch_: int = 0

    def __init__(self, latent_dim: int = 64, hidden: Sequence[int] = (512, 512),
                 decoder_hidden: Sequence[int] | None = None, activation: str = "silu",
                 dropout: float = 0.0, decoder_variance: str | float = "shared",
                 annealing_epochs: int = 200, n_random_subsets: int = 2,
                 likelihood_weights: Mapping[str, float] | None = None,
                 z_given_xM: str = "missing"):
        if latent_dim < 1:
            raise ValueError(f"mvae: latent_dim must be >= 1, got {latent_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"mvae: dropout must lie in [0, 1), got {dropout}")
        if annealing_epochs < 0 or n_random_subsets < 0:
            raise ValueError(f"mvae: annealing_epochs and n_random_subsets must be >= 0, got "
                             f"{annealing_epochs} and {n_random_subsets}")
        if z_given_xM not in ("missing", "joint"):
            raise ValueError(f"mvae: z_given_xM={z_given_xM!r}; allowed: 'missing', 'joint'")
        self.latent_dim, self.hidden = latent_dim, tuple(hidden)
        self.decoder_hidden = None if decoder_hidden is None else tuple(decoder_hidden)
        self.activation, self.dropout, self.decoder_variance = activation, dropout, decoder_variance
        self.annealing_epochs, self.n_random_subsets = annealing_epochs, n_random_subsets
        self.likelihood_weights = None if likelihood_weights is None else dict(likelihood_weights)
        self.z_given_xM = z_given_xM

    def build(self, spec: DataSpec) -> MVAENetwork:
        return MVAENetwork(spec, self, self.steps_per_epoch_)

    def fit(self, train: Views, valid: Views | None = None, *,
            trainer: TrainConfig = TrainConfig(), n_classes: int | None = None,
            on_epoch: EpochCallback | None = None) -> FitReport:
        self.steps_per_epoch_ = math.ceil(train.n / trainer.batch_size)
        return super().fit(train, valid, trainer=trainer, n_classes=n_classes, on_epoch=on_epoch)

    def _posterior(self, batch, names) -> tuple[torch.Tensor, torch.Tensor]:
        return product_of_experts(*self.module_.experts(batch, names))

    def represent(self, xO) -> np.ndarray:
        """Mean of the product posterior given xO (prior expert included), (n, latent_dim)."""
        return self.batched(lambda b: self._posterior(b, self.spec_.observed)[0], xO)

    def generate(self, xO) -> dict[str, np.ndarray]:
        """Decoder means of the missing modalities at the posterior mean given xO."""
        return self.batched(lambda b: self.module_.decode_means(
            self._posterior(b, self.spec_.observed)[0], self.spec_.missing), xO)

    def posteriors(self, views: Views) -> PosteriorStats:
        """z|xO: product posterior given xO; z|xM: given xM (or all, see ``z_given_xM``; None
        when the data have no missing modality); decoder log-variances of the Gaussian missing
        modalities at the mean of z|xO."""
        given_xM = self.spec_.missing if self.z_given_xM == "missing" else self.module_.names
        gaussian_missing = self.spec_.gaussian_missing

        def stats(batch):
            mean, logvar = self._posterior(batch, self.spec_.observed)
            out = {"mean_o": mean, "logvar_o": logvar}
            if given_xM:
                out["mean_m"], out["logvar_m"] = self._posterior(batch, given_xM)
            if gaussian_missing:
                out["decoder_logvar"] = torch.cat(
                    [gaussian_posterior(self.module_.decoders[m](mean))[1]
                     for m in gaussian_missing], dim=1)
            return out

        out = self.batched(stats, views.data)
        return PosteriorStats(
            GaussianStats(out["mean_o"], out["logvar_o"]),
            GaussianStats(out["mean_m"], out["logvar_m"]) if given_xM else None,
            out.get("decoder_logvar"))
