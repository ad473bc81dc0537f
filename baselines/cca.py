"""Linear CCA in closed form (regularised covariances, whitening, SVD).

View 1 is the concatenation of the observed modalities, view 2 that of the missing ones. The
representation is the view-1 canonical variates (x1 - mean1) @ W1 on the top-k directions.
On 784-D pixels unregularised CCA is singular (constant border pixels) and a tiny ridge overfits,
hence the default ridge. The Pearson correlations of the canonical variates are kept in-sample in
``train_correlations_`` and held out on the validation split in ``valid_correlations_``, both
measured the same way (the regularised canonical correlations, which the ridge shrinks, are
``projection_.correlations``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field

from mmbench.config import ModelConfig, NonNegativeReal, PositiveInt
from mmbench.correlation import (
    CHUNK_ROWS,
    Moments,
    canonical_projection,
    fitted_correlations,
    moments,
)
from mmbench.model import Arrays, ClosedFormModel
from mmbench.views import Views


def side_by_side(arrays: Arrays, names: Sequence[str]) -> np.ndarray:
    """The arrays ``names`` concatenated along features (no copy for a single one)."""
    if len(names) == 1:
        return arrays[names[0]]
    return np.concatenate([arrays[m] for m in names], axis=1)


def view_pair(views: Views) -> tuple[torch.Tensor, torch.Tensor]:
    """(observed modalities concatenated, missing modalities concatenated) as float32 tensors."""
    if not views.missing:
        raise ValueError(
            "CCA-type models need at least one missing modality to correlate the "
            "observed ones with; the views have none"
        )
    return (
        torch.as_tensor(side_by_side(views.data, views.observed)),
        torch.as_tensor(side_by_side(views.data, views.missing)),
    )


def observed_matrix(xO: Arrays, names: tuple[str, ...], dims: tuple[int, ...]) -> np.ndarray:
    """The observed modalities ``names`` of ``xO`` concatenated, after checking their widths."""
    absent = [m for m in names if m not in xO]
    if absent:
        raise ValueError(f"xO lacks observed modalities {absent}; expected {list(names)}")
    for m, d in zip(names, dims):
        if xO[m].ndim != 2 or xO[m].shape[1] != d:
            raise ValueError(f"xO[{m!r}] has shape {xO[m].shape}; expected (n, {d})")
    return side_by_side(xO, names)


class CCAConfig(ModelConfig):
    """CCA's hyper-parameters.

    The default ridge 0.1 is about the average pixel variance of the noisy MNIST views (0.06 and
    0.09); on ``mnist_embedded`` it gives held-out correlations 2.9 (sum of the top 10) against
    1.4 with 1e-4. Scale it with the data's variances elsewhere.
    """

    test_params: ClassVar[dict[str, Any]] = {"n_components": 6}

    n_components: PositiveInt = Field(
        10, description="k, the canonical pairs kept (the representation is (n, k))"
    )
    reg1: NonNegativeReal = Field(
        0.1,
        description="ridge added to the view-1 covariance (S11 + reg1 I), in the data's "
        "units squared",
    )
    reg2: NonNegativeReal = Field(0.1, description="ridge added to the view-2 covariance")


class CCA(ClosedFormModel[CCAConfig]):
    """Regularised linear CCA (Hotelling 1936; ridge as in Vinod 1976).

    ``generate`` returns the least-squares regression of view 2 on the k view-1 canonical
    variates (fitted on the training split): with k = min(d1, d2) and no ridge this is ordinary
    least squares of x2 on x1, and for k < that it is the reduced-rank regression that CCA implies
    (the posterior mean E[x2 | x1] of probabilistic CCA; Bach & Jordan 2005).
    """

    name = "cca"
    capabilities = frozenset({"generate"})
    diagnostics = fitted_correlations

    def fit_closed_form(self, train: Views, valid: Views | None) -> dict[str, float]:
        """Closed form on the training split. The history row's loss is minus the total
        correlation of the canonical variates (on ``valid`` for the validation loss)."""
        x1, x2 = view_pair(train)
        self.observed_, self.missing_ = train.observed, train.missing
        self.observed_dims_ = tuple(train.dim(m) for m in train.observed)
        self.missing_dims_ = {m: train.dim(m) for m in train.missing}
        stats = moments(x1, x2)
        config = self.config
        self.projection_ = canonical_projection(
            stats, config.n_components, config.reg1, config.reg2
        )
        self.regression_ = self._regression_on_variates(stats)
        self.train_correlations_ = self.projection_.variate_correlations(x1, x2).numpy()
        row = {"loss": -float(self.train_correlations_.sum())}
        if valid is not None:
            heldout = self.projection_.variate_correlations(*view_pair(valid))
            self.valid_correlations_ = heldout.numpy()
            row["valid_loss"] = -float(self.valid_correlations_.sum())
        return row

    def _regression_on_variates(self, stats: Moments) -> torch.Tensor:
        """B (k, d2) minimising E||x2 - mean2 - c1 B||^2 over the training split, where
        c1 = (x1 - mean1) W1: B = Var(c1)^-1 Cov(c1, x2)."""
        w1 = self.projection_.weights1
        return torch.linalg.solve(w1.T @ stats.cov11 @ w1, w1.T @ stats.cov12)

    def _variates(self, xO: Arrays) -> torch.Tensor:
        """View-1 canonical variates (n, k), float64, computed in chunks of rows."""
        x1 = torch.as_tensor(observed_matrix(xO, self.observed_, self.observed_dims_))
        return torch.cat([self.projection_.project1(rows) for rows in x1.split(CHUNK_ROWS)])

    def represent(self, xO: Arrays) -> np.ndarray:
        """View-1 canonical variates on the top-k directions, (n, k) float32."""
        return self._variates(xO).float().numpy()

    def generate(self, xO: Arrays) -> dict[str, np.ndarray]:
        """Least-squares prediction of each missing modality from the canonical variates."""
        x2 = self.projection_.mean2 + self._variates(xO) @ self.regression_
        parts = torch.split(x2.float(), list(self.missing_dims_.values()), dim=1)
        return {m: part.numpy() for m, part in zip(self.missing_dims_, parts)}
