"""Joint posteriors built from one expert per modality: MVAE's product, MMVAE's mixture, and the
subsets of modalities that MoPoE mixes the products of.

Experts are stacked along a leading modality axis: ``mean`` and ``logvar`` of shape (M, ..., d)
hold the M per-modality Gaussians q(z | x_m) of every point (e.g. (M, batch, d)).
"""

from __future__ import annotations

import itertools
import math

import torch


def product_of_experts(
    mean: torch.Tensor,
    logvar: torch.Tensor,
    mask: torch.Tensor | None = None,
    prior_expert: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Product of diagonal Gaussian experts (Wu & Goodman 2018), optionally times N(0, I).

    The product of N(mu_i, var_i) is Gaussian with precision T = sum_i T_i (T_i = 1 / var_i) and
    mean sum_i mu_i T_i / T; the prior expert adds T_0 = 1 and mu_0 = 0.

    mean, logvar: (M, ..., d) the M experts.
    mask: (S, M) with 1 where expert m takes part in product s and 0 where it does not (bool or
        float), so S subsets are formed from one encoding of every modality; None: one product
        of all M experts.
    prior_expert: include the N(0, I) expert (MVAE's choice, which keeps the product defined for
        an empty subset). Without it every subset must have an expert: an empty one has zero
        precision (mean NaN, logvar inf). That is not checked here, because reading the mask's
        values would stall a GPU in every training step; callers build their masks non-empty.
    Returns (mean, logvar), each (S, ..., d), or (..., d) when ``mask`` is None.
    """
    if mean.shape != logvar.shape:
        raise ValueError(
            f"product_of_experts: mean {tuple(mean.shape)} and logvar {tuple(logvar.shape)} differ"
        )
    n_experts = mean.shape[0]
    squeeze = mask is None
    if mask is None:
        mask = torch.ones(1, n_experts, device=mean.device)
    if mask.ndim != 2 or mask.shape[1] != n_experts:
        raise ValueError(
            f"product_of_experts: mask has shape {tuple(mask.shape)}; expected "
            f"(subsets, {n_experts})"
        )
    mask = mask.to(mean.dtype)
    precision = torch.exp(-logvar).flatten(1)  # (M, N)
    total = mask @ precision  # (S, N)
    weighted_mean = mask @ (mean.flatten(1) * precision)  # (S, N)
    if prior_expert:
        total = total + 1.0
    shape = (mask.shape[0], *mean.shape[1:])
    joint_mean = (weighted_mean / total).reshape(shape)
    joint_logvar = -torch.log(total).reshape(shape)
    if squeeze:
        return joint_mean[0], joint_logvar[0]
    return joint_mean, joint_logvar


def mixture_log_prob(component_log_probs: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log (1/M) sum_m q_m(z) from the M components' log-densities stacked along ``dim``."""
    return torch.logsumexp(component_log_probs, dim) - math.log(component_log_probs.shape[dim])


def mixture_moments(
    means: torch.Tensor, variances: torch.Tensor, dim: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance per dimension of the equally weighted mixture of the components stacked
    along ``dim`` (each with its own mean and variance per dimension): the moment-matched
    Gaussian of a mixture of experts.

    mean = (1/M) sum_m mu_m; var = (1/M) sum_m (var_m + (mu_m - mean)^2).
    """
    mean = means.mean(dim)
    variance = (variances + (means - mean.unsqueeze(dim)) ** 2).mean(dim)
    return mean, variance


def nonempty_subsets(n_modalities: int) -> torch.Tensor:
    """The 2^M - 1 non-empty subsets of M modalities as an (S, M) float mask (1 where modality m is
    in subset s), by size, then in the order of :func:`itertools.combinations`: for M = 3 the
    rows are {0}, {1}, {2}, {0, 1}, {0, 2}, {1, 2}, {0, 1, 2}. The last row is the full set.
    A mask for :func:`product_of_experts`."""
    if n_modalities < 1:
        raise ValueError(f"nonempty_subsets: need at least one modality, got {n_modalities}")
    rows = [
        [float(m in subset) for m in range(n_modalities)]
        for size in range(1, n_modalities + 1)
        for subset in itertools.combinations(range(n_modalities), size)
    ]
    return torch.tensor(rows)
