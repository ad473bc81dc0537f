"""Divergences between distributions and between samples.

KL divergences are those registered with ``torch.distributions.kl_divergence``; this module adds
the per-dimension Gaussian KL used by the collapse analysis (numpy, on stored statistics), the
variant of the official CMMD code, and the kernel MMD.
"""

from __future__ import annotations

import numpy as np
import torch


def gaussian_kl_per_dim(mu_q, logvar_q, mu_p, logvar_p):
    """KL[N(mu_q, e^logvar_q) || N(mu_p, e^logvar_p)] per dimension, in nats.

    Works on numpy arrays or tensors of one broadcastable shape, e.g. (n, d); returns that shape.
    """
    lib = torch if isinstance(mu_q, torch.Tensor) else np
    var_ratio = lib.exp(logvar_q - logvar_p)
    mahalanobis = (mu_q - mu_p) ** 2 / lib.exp(logvar_p)
    return 0.5 * (var_ratio + mahalanobis - 1.0 - (logvar_q - logvar_p))


def official_cmmd_kl(
    q: torch.distributions.Independent, p: torch.distributions.Independent
) -> torch.Tensor:
    """The KL of the official CMMD (Theano) code, summed over the last dimension, shape (batch,).

    It omits the 1/2 on the variance-ratio term, so it equals d/2 (not 0) when q = p. Offered only
    to reproduce that code's numbers; the paper's KL is ``torch.distributions.kl_divergence``.
    """
    logvar_q = 2 * q.base_dist.scale.log()
    logvar_p = 2 * p.base_dist.scale.log()
    mean_q, mean_p = q.base_dist.loc, p.base_dist.loc
    per_dim = (
        torch.exp(logvar_q - logvar_p)
        + 0.5 * (mean_q - mean_p) ** 2 / torch.exp(logvar_p)
        - 0.5
        - 0.5 * (logvar_q - logvar_p)
    )
    return per_dim.sum(-1)


def gaussian_kernel(
    x: torch.Tensor,
    y: torch.Tensor,
    bandwidth: float,
    x_norms: torch.Tensor | None = None,
    y_norms: torch.Tensor | None = None,
) -> torch.Tensor:
    """k(x_i, y_j) = exp(-||x_i - y_j||^2 / bandwidth) for x (n, d), y (m, d); returns (n, m).

    x_norms, y_norms: the squared row norms ||x_i||^2 (n,) and ||y_j||^2 (m,) when the caller has
    them (computed here otherwise).
    """
    # Expanded form instead of cdist: its gradient is NaN at zero distance (the diagonal of
    # k(x, x)).
    x_norms = (x * x).sum(1) if x_norms is None else x_norms
    y_norms = (y * y).sum(1) if y_norms is None else y_norms
    squared = torch.addmm(x_norms.unsqueeze(1) + y_norms, x, y.T, alpha=-2)
    return torch.exp(squared.clamp_min(0) * (-1 / bandwidth))


def mmd(x: torch.Tensor, y: torch.Tensor, bandwidth: float | None = None) -> torch.Tensor:
    """Squared MMD between the samples x (n, d) and y (m, d), biased V-statistic (paper Eq. 4).

    bandwidth: the Gaussian kernel's scale; default d^2, as in the official CMMD and InfoVAE code
    (exp of minus the *mean* squared difference over the d dimensions, divided by d).
    """
    if bandwidth is None:
        bandwidth = float(x.shape[1] ** 2)
    x_norms, y_norms = (x * x).sum(1), (y * y).sum(1)  # once each for the three kernels
    return (
        gaussian_kernel(x, x, bandwidth, x_norms, x_norms).mean()
        + gaussian_kernel(y, y, bandwidth, y_norms, y_norms).mean()
        - 2 * gaussian_kernel(x, y, bandwidth, x_norms, y_norms).mean()
    )
