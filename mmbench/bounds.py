"""Variational bounds on log p(x) from importance log-weights, and the DReG gradient surrogate.

A log-weight is log w = log p(x, z) - log q(z | x) for one sample z ~ q. With the samples of each
data point laid along ``dim`` (an int or a tuple of dims, e.g. (K, batch) or (K, M, batch)):

    elbo  = mean_k log w_k                       (Kingma & Welling)
    iwae  = log (1/K) sum_k w_k  >= elbo         (Burda et al. 2016), -> log p(x) as K grows
"""

from __future__ import annotations

import math

import torch

Dims = int | tuple[int, ...]


def _count(log_weights: torch.Tensor, dim: Dims) -> int:
    dims = (dim,) if isinstance(dim, int) else dim
    return math.prod(log_weights.shape[d] for d in dims)


def elbo(log_weights: torch.Tensor, dim: Dims = 0) -> torch.Tensor:
    """The mean log-weight over the samples along ``dim``."""
    return log_weights.mean(dim)


def iwae(log_weights: torch.Tensor, dim: Dims = 0) -> torch.Tensor:
    """The importance-weighted bound log (1/K) sum_k exp(log w_k) over the samples along ``dim``."""
    return torch.logsumexp(log_weights, dim) - math.log(_count(log_weights, dim))


def normalised_weights(log_weights: torch.Tensor, dim: Dims = 0) -> torch.Tensor:
    """w_k / sum_j w_j along ``dim`` (same shape as ``log_weights``)."""
    return torch.exp(log_weights - torch.logsumexp(log_weights, dim, keepdim=True))


def dreg_iwae(log_weights: torch.Tensor, z: torch.Tensor, dim: Dims = 0) -> torch.Tensor:
    """The IWAE bound whose gradient is the doubly reparameterised estimator (DReG, Tucker et
    al. 2019).

    Its value is ``iwae(log_weights, dim)``. Its gradient is, for the parameters of p (decoder,
    prior), the IWAE gradient sum_k w~_k grad log w_k, and for the parameters of q, which reach
    the bound only through the reparameterised samples z, sum_k w~_k^2 (d log w_k / d z_k)
    (d z_k / d phi), where w~ are the normalised weights.

    Requirements on the caller:
    - ``log_weights`` evaluates log q(z | x) with q's parameters *detached* (the score-function
      term that DReG removes);
    - ``z`` (shape ``log_weights.shape + (d,)``) are the reparameterised samples and enter the
      bound only through ``log_weights``: a hook on z multiplies their incoming gradient by w~,
      which turns the w~ of the surrogate sum_k w~_k log w_k into w~^2 on the path through z.
    """
    weights = normalised_weights(log_weights.detach(), dim)
    if z.requires_grad:
        # in z's type: under bfloat16 autocast z may be bfloat16 while the weights are float32
        z.register_hook(lambda grad: grad * weights.unsqueeze(-1).to(grad.dtype))
    surrogate = (weights * log_weights).sum(dim)
    return iwae(log_weights.detach(), dim) + surrogate - surrogate.detach()
