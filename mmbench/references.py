"""Reference rows: what the data give without a model, as estimators on the model interface, so
that a suite runs, records, seeds and resumes them like its models (as runs of role "reference").

    raw xO        (``raw_xo``) the suite's downstream classifier on the observed modalities,
                  standardised with training statistics: ``represent`` is that standardised xO,
                  so evaluation scores it by the downstream protocol (error % or mAP); no rmse.
    mean xM       (``mean_xm``) each missing modality predicted by its training mean; rmse only.
    ridge xO→xM   (``ridge_xo_xm``) ridge regression of the missing modalities on the
                  standardised observed ones, with an unpenalised intercept and the penalty of
                  ``ALPHAS`` whose validation rmse is lowest; rmse only.

mean xM and ridge xO→xM have no representation (``represent`` is (n, 0)), so evaluation gives
them no classification metric; on data without a missing modality they fit nothing and give no
metric at all. Every fit is closed form in float64, over chunks of rows.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from mmbench.config import ModelConfig
from mmbench.model import Arrays, ClosedFormModel, ConfigT
from mmbench.views import Views

CHUNK_ROWS = 65536  # rows per float64 chunk of the sums of squares and of the predictions
ALPHAS = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6)
"""The penalties alpha ridge xO→xM tries: scikit-learn's Ridge, ||Y - X W||^2 + alpha ||W||^2
on the standardised X (an unpenalised intercept); the lowest validation rmse is kept."""


class Reference(ClosedFormModel[ConfigT]):
    """A reference row: no model, closed form. ``label`` is the row's name in every table."""

    label: ClassVar[str]

    def fit_closed_form(self, train: Views, valid: Views | None) -> dict[str, float]:
        """Standardise the observed modalities with training statistics, then fit what the
        reference predicts. The history row holds the training and validation mean squared
        errors of the missing modalities' predictions, where there are any."""
        self.observed_ = train.observed
        self.mean_, self.scale_ = standardisation(side_by_side(train.xO, train.observed))
        return self._fit(train, valid)

    def _fit(self, train: Views, valid: Views | None) -> dict[str, float]:
        """Fit what the reference predicts; return {"loss": ..., "valid_loss": ...} (mean
        squared errors) or {} when nothing is fitted."""
        return {}

    def standardised(self, xO: Arrays) -> np.ndarray:
        """The observed modalities side by side, z-scored with the training mean and standard
        deviation (features constant in training are centred only), (n, d_O) float32."""
        x = side_by_side(xO, self.observed_)
        return (x - self.mean_.astype(np.float32)) / self.scale_.astype(np.float32)

    def represent(self, xO: Arrays) -> np.ndarray:
        """No representation: (n, 0) (the row is not classified)."""
        return np.empty((rows(xO), 0), dtype=np.float32)


class RawObserved(Reference[ModelConfig]):
    """raw xO: the suite's downstream classifier on the standardised observed modalities."""

    name = "raw_xo"
    label = "raw xO"

    def represent(self, xO: Arrays) -> np.ndarray:
        """The observed modalities side by side, standardised with training statistics."""
        return self.standardised(xO)


class MeanMissing(Reference[ModelConfig]):
    """mean xM: each missing modality predicted by its training mean."""

    name = "mean_xm"
    label = "mean xM"
    capabilities = frozenset({"generate"})

    def _fit(self, train: Views, valid: Views | None) -> dict[str, float]:
        self.means_ = {m: train.data[m].mean(axis=0, dtype=np.float64) for m in train.missing}
        if not self.means_:
            return {}
        row = {"loss": mean_squared_error(self.generate(train.xO), train.xM)}
        if valid is not None:
            row["valid_loss"] = mean_squared_error(self.generate(valid.xO), valid.xM)
        return row

    def generate(self, xO: Arrays) -> dict[str, np.ndarray]:
        """The training mean of each missing modality on every row, name -> (n, d_m)."""
        n = rows(xO)
        return {m: np.tile(mean.astype(np.float32), (n, 1)) for m, mean in self.means_.items()}


class RidgeMissing(Reference[ModelConfig]):
    """ridge xO→xM: ridge regression of the missing modalities on the standardised observed
    ones, its penalty chosen on the validation split among ``ALPHAS``."""

    name = "ridge_xo_xm"
    label = "ridge xO→xM"
    capabilities = frozenset({"generate"})

    def _fit(self, train: Views, valid: Views | None) -> dict[str, float]:
        self.missing_dims_ = {m: train.dim(m) for m in train.missing}
        if not train.missing:
            return {}
        if valid is None:
            raise ValueError(
                f"{self.name} chooses its penalty among {list(ALPHAS)} on the "
                "validation split, and none was given"
            )
        x = side_by_side(train.xO, train.observed)
        y = side_by_side(train.xM, train.missing)
        mean_y = y.mean(axis=0, dtype=np.float64)
        gram, cross = centred_products(x, y, self.mean_, mean_y)
        # On the standardised features: X_s = (X - mean_x) / scale.
        gram /= np.outer(self.scale_, self.scale_)
        cross /= self.scale_[:, None]
        eigenvalues, eigenvectors = np.linalg.eigh(gram)
        rotated = eigenvectors.T @ cross
        fits = []
        for alpha in ALPHAS:
            weights = eigenvectors @ (rotated / (eigenvalues + alpha)[:, None])
            coef = weights / self.scale_[:, None]  # on the raw features
            fits.append((coef, mean_y - self.mean_ @ coef))
        x_valid = side_by_side(valid.xO, valid.observed)
        y_valid = side_by_side(valid.xM, valid.missing)
        self.valid_mse_ = [mean_squared_error_of(predict(x_valid, *fit), y_valid) for fit in fits]
        chosen = int(np.argmin(self.valid_mse_))  # the first of equal ones
        self.alpha_ = ALPHAS[chosen]
        self.coef_, self.intercept_ = fits[chosen]
        return {
            "loss": mean_squared_error_of(predict(x, self.coef_, self.intercept_), y),
            "valid_loss": self.valid_mse_[chosen],
        }

    def generate(self, xO: Arrays) -> dict[str, np.ndarray]:
        """The ridge prediction of each missing modality, name -> (n, d_m)."""
        x = side_by_side(xO, self.observed_)
        predicted = predict(x, self.coef_, self.intercept_)
        parts = np.split(predicted, np.cumsum(list(self.missing_dims_.values()))[:-1], axis=1)
        return dict(zip(self.missing_dims_, parts))

    def diagnostics(self) -> dict[str, Any]:
        """The chosen penalty, and the validation rmse of every penalty tried."""
        if not self.missing_dims_:
            return {}
        return {
            "alpha": self.alpha_,
            "alphas": list(ALPHAS),
            "valid_rmse": [float(np.sqrt(mse)) for mse in self.valid_mse_],
        }


def rows(arrays: Arrays) -> int:
    """The number of rows of ``arrays`` (their first dimension, shared)."""
    return len(next(iter(arrays.values())))


def side_by_side(arrays: Arrays, names: tuple[str, ...]) -> np.ndarray:
    """The modalities ``names`` of ``arrays`` side by side (no copy for a single one), after
    checking that each is there."""
    absent = [m for m in names if m not in arrays]
    if absent:
        raise ValueError(f"the arrays lack modalities {absent}; expected {list(names)}")
    if len(names) == 1:
        return arrays[names[0]]
    return np.concatenate([arrays[m] for m in names], axis=1)


def standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean and the standard deviation (1 where it is 0) of the columns of x, float64, as
    scikit-learn's StandardScaler computes them."""
    mean = x.mean(axis=0, dtype=np.float64)
    variance = sum(
        ((x[s : s + CHUNK_ROWS].astype(np.float64) - mean) ** 2).sum(axis=0)
        for s in range(0, len(x), CHUNK_ROWS)
    ) / len(x)
    scale = np.sqrt(variance)
    return mean, np.where(scale > 0, scale, 1.0)


def centred_products(
    x: np.ndarray, y: np.ndarray, mean_x: np.ndarray, mean_y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(Xc^T Xc, Xc^T Yc) of the centred rows, float64, accumulated over chunks of rows."""
    gram = np.zeros((x.shape[1], x.shape[1]))
    cross = np.zeros((x.shape[1], y.shape[1]))
    for s in range(0, len(x), CHUNK_ROWS):
        a = x[s : s + CHUNK_ROWS].astype(np.float64) - mean_x
        gram += a.T @ a
        cross += a.T @ (y[s : s + CHUNK_ROWS].astype(np.float64) - mean_y)
    return gram, cross


def predict(x: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """x @ coef + intercept over chunks of rows, float32 (n, d_M)."""
    starts = range(0, max(len(x), 1), CHUNK_ROWS)  # one empty chunk when x has no rows
    return np.concatenate(
        [
            (x[s : s + CHUNK_ROWS].astype(np.float64) @ coef + intercept).astype(np.float32)
            for s in starts
        ]
    )


def mean_squared_error_of(predicted: np.ndarray, truth: np.ndarray) -> float:
    """The mean over every element of (predicted - truth)^2, in float64."""
    return float(np.mean((predicted.astype(np.float64) - truth) ** 2))


def mean_squared_error(predicted: dict[str, np.ndarray], truth: Arrays) -> float:
    """:func:`mean_squared_error_of` the modalities of ``predicted``, pooled."""
    names = tuple(predicted)
    return mean_squared_error_of(side_by_side(predicted, names), side_by_side(truth, names))
