"""Canonical correlation analysis: regularised covariances, closed-form CCA, and the deep CCA
objective of Andrew et al. (2013).

For two views h1 (n, d1) and h2 (n, d2) with ridge-regularised covariances
S11 = cov(h1) + r1 I, S22 = cov(h2) + r2 I and cross-covariance S12, the canonical correlations
are the singular values of T = S11^-1/2 S12 S22^-1/2. Any factor with W W^T = S^-1 whitens
as well as the symmetric square root, and has the same singular values for T; we use the Cholesky
factor S = L L^T (T = L1^-1 S12 L2^-T) because its gradient, unlike that of an eigendecomposition,
has no 1 / (lambda_i - lambda_j) terms that blow up when eigenvalues coincide (as they do for
the ridge-only directions of dead units). Everything is computed in float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

CHUNK_ROWS = 65536  # rows per float64 chunk when accumulating moments of large data


@dataclass(frozen=True)
class Moments:
    """Sample means and (unregularised, 1 / (n - 1)) covariances of two views, float64.

    mean1 (d1,), mean2 (d2,), cov11 (d1, d1), cov22 (d2, d2), cov12 (d1, d2); n samples.
    """

    mean1: torch.Tensor
    mean2: torch.Tensor
    cov11: torch.Tensor
    cov22: torch.Tensor
    cov12: torch.Tensor
    n: int


def moments(h1: torch.Tensor, h2: torch.Tensor, chunk_rows: int = CHUNK_ROWS) -> Moments:
    """Means and covariances of paired rows h1 (n, d1), h2 (n, d2), differentiable.

    Two passes (means, then centred cross-products) over float64 chunks of ``chunk_rows`` rows,
    so float32 data of any size is never copied whole into float64.
    """
    if h1.ndim != 2 or h2.ndim != 2 or h1.shape[0] != h2.shape[0]:
        raise ValueError(
            f"views must be (n, d1) and (n, d2) with the same n; got "
            f"{tuple(h1.shape)} and {tuple(h2.shape)}"
        )
    n = h1.shape[0]
    if n == 0:
        raise ValueError("covariances of an empty batch (n = 0)")
    starts = range(0, n, chunk_rows)
    d1, d2 = h1.shape[1], h2.shape[1]
    sum1 = h1.new_zeros(d1, dtype=torch.float64)
    sum2 = h2.new_zeros(d2, dtype=torch.float64)
    for s in starts:
        sum1 = sum1 + h1[s : s + chunk_rows].double().sum(0)
        sum2 = sum2 + h2[s : s + chunk_rows].double().sum(0)
    mean1, mean2 = sum1 / n, sum2 / n
    cov11 = h1.new_zeros((d1, d1), dtype=torch.float64)
    cov22 = h2.new_zeros((d2, d2), dtype=torch.float64)
    cov12 = h1.new_zeros((d1, d2), dtype=torch.float64)
    for s in starts:
        a = h1[s : s + chunk_rows].double() - mean1
        b = h2[s : s + chunk_rows].double() - mean2
        cov11 = cov11 + a.T @ a
        cov22 = cov22 + b.T @ b
        cov12 = cov12 + a.T @ b
    # A single point (e.g. the last mini-batch of an epoch) has zero covariance, not 0 / 0: with
    # the ridge its canonical correlations are 0 and it adds nothing to the objective.
    dof = max(n - 1, 1)
    return Moments(mean1, mean2, cov11 / dof, cov22 / dof, cov12 / dof, n)


def whitened_cross_covariance(
    m: Moments, reg1: float, reg2: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """T = L1^-1 S12 L2^-T (d1, d2) and the Cholesky factors L1, L2 of S11 + r1 I, S22 + r2 I.

    The singular values of T are the canonical correlations of the regularised problem.
    """
    t, chol1, chol2, singular = _whitened(m, reg1, reg2)
    if singular.item():
        raise ValueError(
            "a view's covariance is singular (constant or collinear features); "
            "use a ridge > 0 (reg1 / reg2)"
        )
    return t, chol1, chol2


def _whitened(
    m: Moments, reg1: float, reg2: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`whitened_cross_covariance` and whether a factorisation failed (a 0-d bool tensor,
    not read: T is then meaningless)."""
    if reg1 < 0 or reg2 < 0:
        raise ValueError(f"ridge terms must be >= 0, got reg1={reg1}, reg2={reg2}")
    eye1 = torch.eye(m.cov11.shape[0], dtype=m.cov11.dtype, device=m.cov11.device)
    eye2 = torch.eye(m.cov22.shape[0], dtype=m.cov22.dtype, device=m.cov22.device)
    chol1, info1 = torch.linalg.cholesky_ex(m.cov11 + reg1 * eye1)
    chol2, info2 = torch.linalg.cholesky_ex(m.cov22 + reg2 * eye2)
    # L1^-1 S12, then (L2^-1 (L1^-1 S12)^T)^T = L1^-1 S12 L2^-T
    left = torch.linalg.solve_triangular(chol1, m.cov12, upper=False)
    t = torch.linalg.solve_triangular(chol2, left.T, upper=False).T
    return t, chol1, chol2, (info1 != 0) | (info2 != 0)


def check_components(n_components: int | None, d1: int, d2: int) -> int:
    """The number of canonical pairs to keep: ``n_components``, or min(d1, d2) when None."""
    most = min(d1, d2)
    if n_components is None:
        return most
    if not 1 <= n_components <= most:
        raise ValueError(f"n_components={n_components} must lie in 1..min(d1={d1}, d2={d2})")
    return n_components


def total_correlation(
    h1: torch.Tensor,
    h2: torch.Tensor,
    n_components: int | None = None,
    reg1: float = 1e-4,
    reg2: float = 1e-4,
) -> torch.Tensor:
    """Andrew et al.'s DCCA objective: the sum of the top ``n_components`` canonical
    correlations of h1 (n, d1) and h2 (n, d2) (all of them, the trace norm of T, when None).

    Returns a 0-d float64 tensor, differentiable in h1 and h2: the gradient of a sum of singular
    values with respect to T is U_k V_k^T, free of the 1 / (s_i^2 - s_j^2) terms of a full SVD's
    backward pass, so it stays finite where singular values coincide. It is NaN where a view's
    regularised covariance is singular (the trainer then records a diverged run): it is computed
    in every training step, so it reads nothing back to the host.
    """
    t, _, _, singular = _whitened(moments(h1, h2), reg1, reg2)
    correlations = torch.linalg.svdvals(torch.where(singular, torch.zeros_like(t), t))
    k = check_components(n_components, *t.shape)
    return torch.where(
        singular, torch.full_like(correlations[0], float("nan")), correlations[:k].sum()
    )


@dataclass(frozen=True)
class CanonicalProjection:
    """The top-k canonical directions of two views, float64.

    c1 = (x1 - mean1) @ weights1 and c2 = (x2 - mean2) @ weights2 are the canonical variates,
    (n, k); on the fitting data they have (regularised) unit variance and are uncorrelated across
    components. ``correlations`` (descending) are the canonical correlations of the regularised
    problem: cov(c1[:, i], c2[:, i]) on the fitting data, which the ridge shrinks below the
    Pearson correlation of the variates (equal to it without a ridge); report correlations of
    the variates measured one way on any data with :meth:`variate_correlations`.
    """

    mean1: torch.Tensor  # (d1,)
    mean2: torch.Tensor  # (d2,)
    weights1: torch.Tensor  # (d1, k)
    weights2: torch.Tensor  # (d2, k)
    correlations: torch.Tensor  # (k,)

    def project1(self, x1: torch.Tensor) -> torch.Tensor:
        """View-1 canonical variates (n, k), float64."""
        return (x1.double() - self.mean1) @ self.weights1

    def project2(self, x2: torch.Tensor) -> torch.Tensor:
        """View-2 canonical variates (n, k), float64."""
        return (x2.double() - self.mean2) @ self.weights2

    def variate_correlations(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Pearson correlation of each pair of canonical variates of (x1, x2), (k,).

        The directions stay those fitted: on the fitting data this is the in-sample
        correlation, on other data the out-of-sample one (not a CCA refitted on (x1, x2)).
        """
        return columnwise_correlation(self.project1(x1), self.project2(x2))


def canonical_projection(
    m: Moments, n_components: int | None, reg1: float, reg2: float
) -> CanonicalProjection:
    """Closed-form regularised CCA from the moments: whitening, then the SVD T = U S V^T;
    weights1 = L1^-T U_k, weights2 = L2^-T V_k, correlations = the top-k singular values."""
    t, chol1, chol2 = whitened_cross_covariance(m, reg1, reg2)
    k = check_components(n_components, *t.shape)
    u, s, vh = torch.linalg.svd(t, full_matrices=False)
    weights1 = torch.linalg.solve_triangular(chol1.T, u[:, :k], upper=True)
    weights2 = torch.linalg.solve_triangular(chol2.T, vh[:k].T, upper=True)
    return CanonicalProjection(m.mean1, m.mean2, weights1, weights2, s[:k])


def columnwise_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation between a[:, i] and b[:, i] for each column, (k,)."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    return (a * b).sum(0) / (a.norm(dim=0) * b.norm(dim=0))


class FittedCanonicalModel(Protocol):
    """A fitted CCA-type model: the correlations of its canonical variates on the training
    split, (k,); one fitted with a validation split also has ``valid_correlations_``, (k,)."""

    train_correlations_: np.ndarray


def fitted_correlations(model: FittedCanonicalModel) -> dict[str, list[float]]:
    """The correlations of the canonical variates of a fitted CCA-type model, measured the same
    way (:meth:`CanonicalProjection.variate_correlations`) in-sample on train and held out on
    validation, for its run record; used as that model's ``diagnostics`` method."""
    out = {"train_correlations": model.train_correlations_.tolist()}
    valid_correlations = getattr(model, "valid_correlations_", None)
    if valid_correlations is not None:
        out["valid_correlations"] = valid_correlations.tolist()
    return out
