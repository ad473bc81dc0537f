"""Building blocks of the multimodal VAEs (JMVAE, MVAE, MoPoE, MMVAE, MMVAE+): the state their
networks share, one network per modality, the experts' parameters stacked for fusion, and the
bound of stratified samples from a mixture of experts. Each model's objective (its loss, or the
log-weights of its samples) stays in its own module."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mmbench import bounds
from mmbench.model import DataSpec
from mmbench.nn import GaussianHead, decoder_layers, likelihood_head, stochastic_mlp
from mmbench.trainer import Batch, Progress


class MultimodalVAENetwork(nn.Module):
    """What the network of every multimodal VAE holds: the data's ``spec``, the model's
    ``config``, ``names`` (every modality, the observed ones first) and ``weights`` (modality
    name -> lambda_m, the weight of its log-likelihood, from ``config.likelihood_weights``; 1 for
    those it does not set)."""

    def __init__(self, spec: DataSpec, config: Any):
        super().__init__()
        self.spec, self.config = spec, config
        self.names = spec.modalities
        self.weights = spec.per_modality(config.likelihood_weights, 1.0, "likelihood_weights")

    def data_likelihood_decoders(self) -> nn.ModuleDict:
        """:func:`modality_decoders` whose heads are each modality's own likelihood
        (:func:`mmbench.nn.likelihood_head` with ``config.decoder_variance``), of ``config``'s
        latent_dim, decoder layers (``decoder_hidden``, else ``hidden`` reversed), activation and
        dropout."""
        config, spec = self.config, self.spec
        return modality_decoders(
            self.names,
            config.latent_dim,
            decoder_layers(config.hidden, config.decoder_hidden),
            lambda m, width: likelihood_head(
                spec.likelihoods[m], width, spec.dims[m], config.decoder_variance
            ),
            config.activation,
            config.dropout,
        )


class StratifiedMixtureNetwork(MultimodalVAENetwork, ABC):
    """A multimodal VAE trained on K samples from each of its M experts (MMVAE, MMVAE+): the loss
    is minus the batch mean of :func:`stratified_bound` of :meth:`log_weights`, for
    ``config.objective`` and ``config.looser``, with DReG gradients in training when the
    objective is "dreg"."""

    @abstractmethod
    def log_weights(
        self, batch: Batch, detach_posterior: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log w, z): the K samples z from every expert, (K, M, b, D), and their log-weights
        (K, M, b); the experts' parameters are detached in log q when ``detach_posterior``."""

    def loss(
        self, batch: Batch, progress: Progress | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        objective = self.config.objective
        dreg = objective == "dreg" and self.training
        log_w, z = self.log_weights(batch, detach_posterior=dreg)
        bound = stratified_bound(log_w, z, objective, self.config.looser, dreg)
        mean = bound.mean()
        return -mean, {objective: mean.detach()}


def gaussian_experts(
    dims: Mapping[str, int], hidden: Sequence[int], latent_dim: int, act: str, dropout: float
) -> nn.ModuleDict:
    """q(z | x_m) = N(mu_m, diag(var_m)) for every modality m of ``dims`` (name -> d_m): an
    :class:`mmbench.nn.MLP` d_m -> ``hidden`` and a :class:`mmbench.nn.GaussianHead` of
    ``latent_dim``; called on (b, d_m) it returns a distribution of batch shape (b,)."""
    return nn.ModuleDict(
        {
            m: stochastic_mlp(
                dim, hidden, lambda width: GaussianHead(width, latent_dim, "input"), act, dropout
            )
            for m, dim in dims.items()
        }
    )


def modality_decoders(
    names: Sequence[str],
    latent_dim: int,
    hidden: Sequence[int],
    head: Callable[[str, int], nn.Module],
    act: str,
    dropout: float,
) -> nn.ModuleDict:
    """p(x_m | z) for every modality m of ``names``: an :class:`mmbench.nn.MLP` latent_dim ->
    ``hidden`` and ``head(m, width of its last layer)``, the likelihood of x_m; called on
    (..., latent_dim) it returns that distribution."""
    return nn.ModuleDict(
        {
            m: stochastic_mlp(latent_dim, hidden, lambda width, m=m: head(m, width), act, dropout)
            for m in names
        }
    )


def stack_experts(
    params: Sequence[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """The parameter pairs of n experts, each two (b, d) tensors ((mean, logvar) or (loc,
    scale)), as two stacks (n, b, d)."""
    return torch.stack([p[0] for p in params]), torch.stack([p[1] for p in params])


def stratified_bound(
    log_w: torch.Tensor, z: torch.Tensor, objective: str, looser: bool, dreg: bool
) -> torch.Tensor:
    """The bound of each data point, (b,), from the log-weights ``log_w`` (K, M, b) of K samples
    ``z`` (K, M, b, D) drawn from each of M experts:

    "elbo"  the mean of log w over the M*K samples;
    else    log (1/MK) sum w over the M*K samples (IWAE), or (``looser``) the mean over the
            experts of log (1/K) sum w over each expert's K; with DReG gradients
            (:func:`mmbench.bounds.dreg_iwae`) when ``dreg``.
    """
    samples = 0 if looser else (0, 1)
    if objective == "elbo":
        bound = bounds.elbo(log_w, dim=(0, 1))
    elif dreg:
        bound = bounds.dreg_iwae(log_w, z, dim=samples)
    else:
        bound = bounds.iwae(log_w, dim=samples)
    return bound.mean(0) if looser else bound
