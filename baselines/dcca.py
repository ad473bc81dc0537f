"""Deep CCA (Andrew, Arora, Bilmes & Livescu 2013), trained with mini-batches (Wang et al. 2015).

Two networks map view 1 (the observed modalities, concatenated) and view 2 (the missing ones)
to h1 = f1(x1), h2 = f2(x2) of size ``latent_dim``. The loss of a batch is minus the sum of the
top ``n_components`` canonical correlations of (h1, h2) on that batch with ridge-regularised
covariances (the trace norm of T = S11^-1/2 S12 S22^-1/2 when all are kept), in float64; see
:mod:`mmbench.correlation`. After training, a linear CCA is fitted on the networks' outputs for
the whole training split; the representation is f1(x1) projected on its top-k view-1 directions.
The correlations of that final projection's canonical variates are kept in-sample in
``train_correlations_`` and held out on the validation split in ``valid_correlations_``, both
Pearson correlations (see :meth:`mmbench.correlation.CanonicalProjection.variate_correlations`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field, ValidationInfo, field_validator
from torch import nn

from mmbench.config import (
    HiddenActivation,
    HiddenDropout,
    Layers,
    ModelConfig,
    NonNegativeReal,
    PositiveInt,
)
from mmbench.correlation import (
    CanonicalProjection,
    canonical_projection,
    check_components,
    fitted_correlations,
    moments,
    total_correlation,
)
from mmbench.model import Arrays, DataSpec, TorchModel, concat
from mmbench.nn import MLP
from mmbench.trainer import Batch, Progress
from mmbench.views import Views


class DCCAConfig(ModelConfig):
    """DCCA's hyper-parameters; the defaults are Wang et al.'s (2015) noisy-MNIST networks,
    784-1024-1024-1024-10.

    Mini-batches should be large (hundreds) for the batch correlation to estimate the population
    one; set the suite's ``batch_size`` for this model accordingly.
    """

    test_params: ClassVar[dict[str, Any]] = {"latent_dim": 6, "hidden": (32,)}

    latent_dim: PositiveInt = Field(10, description="output size L of each network")
    hidden: Layers = Field((1024, 1024, 1024), description="hidden layers of both networks")
    n_components: PositiveInt | None = Field(
        None,
        description="canonical correlations summed in the objective and kept in the "
        "representation, at most latent_dim (None: all, the trace norm)",
    )
    activation: HiddenActivation = "relu"
    dropout: HiddenDropout = 0.0
    reg1: NonNegativeReal = Field(
        1e-4,
        description="ridge added to the view-1 output covariance (S11 + reg1 I), in the "
        "objective and in the final linear CCA",
    )
    reg2: NonNegativeReal = Field(1e-4, description="ridge added to the view-2 output covariance")

    @field_validator("n_components")
    @classmethod
    def _at_most_latent_dim(cls, n_components: int | None, info: ValidationInfo) -> int | None:
        latent_dim = info.data.get("latent_dim")
        if n_components is not None and latent_dim is not None and n_components > latent_dim:
            raise ValueError(f"Input should be at most latent_dim = {latent_dim} (or None for all)")
        return n_components


def feedforward(
    in_dim: int, hidden: Sequence[int], out_dim: int, act: str, dropout: float
) -> nn.Sequential:
    """An :class:`MLP` and a linear output layer: in_dim -> hidden... -> out_dim."""
    body = MLP(in_dim, hidden, act, dropout)
    return nn.Sequential(body, nn.Linear(body.out_dim, out_dim))


class DCCANetwork(nn.Module):
    """f1, f2 and the final linear CCA on their outputs (buffers, filled after training)."""

    cca_mean1: torch.Tensor
    cca_weights1: torch.Tensor

    def __init__(self, spec: DataSpec, config: DCCAConfig):
        super().__init__()
        self.spec, self.config = spec, config
        latent = config.latent_dim
        self.n_components = check_components(config.n_components, latent, latent)
        self.encoder1 = feedforward(
            spec.observed_dim, config.hidden, latent, config.activation, config.dropout
        )
        self.encoder2 = feedforward(
            spec.missing_dim, config.hidden, latent, config.activation, config.dropout
        )
        self.register_buffer("cca_mean1", torch.zeros(latent, dtype=torch.float64))
        self.register_buffer(
            "cca_weights1", torch.zeros(latent, self.n_components, dtype=torch.float64)
        )

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(f1(x1), f2(x2)), each (b, latent_dim)."""
        return (
            self.encoder1(concat(batch, self.spec.observed)),
            self.encoder2(concat(batch, self.spec.missing)),
        )

    def correlation(self, h1: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
        """Sum of the top-k canonical correlations of the batch outputs (0-d, float64)."""
        return total_correlation(h1, h2, self.n_components, self.config.reg1, self.config.reg2)

    def loss(
        self, batch: Batch, progress: Progress | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        correlation = self.correlation(*self.encode(batch))
        return -correlation, {"correlation": correlation}

    def set_projection(self, projection: CanonicalProjection) -> None:
        self.cca_mean1.copy_(projection.mean1)
        self.cca_weights1.copy_(projection.weights1)

    def represent(self, batch: Batch) -> torch.Tensor:
        """View-1 canonical variates of f1(x1), (b, k) float32."""
        h1 = self.encoder1(concat(batch, self.spec.observed))
        return ((h1.double() - self.cca_mean1) @ self.cca_weights1).float()


class DCCA(TorchModel[DCCAConfig, DCCANetwork]):
    """Deep CCA; defaults are Wang et al.'s (2015) noisy-MNIST networks, 784-1024-1024-1024-10."""

    name = "dcca"
    capabilities = frozenset()
    diagnostics = fitted_correlations

    def unsupported(self, spec: DataSpec) -> str | None:
        if not spec.missing:
            return (
                "needs at least one missing modality to correlate the observed ones with; "
                "the data have none"
            )
        return None

    def after_training(self, train: Views, valid: Views | None) -> None:
        """Fit the final linear CCA on the trained networks' outputs on ``train`` and measure
        its canonical correlations on ``valid`` (``valid_correlations_``, (k,))."""
        outputs = self._outputs(train)
        projection = canonical_projection(
            moments(*outputs), self.module_.n_components, self.config.reg1, self.config.reg2
        )
        self.module_.set_projection(projection)
        self.train_correlations_ = projection.variate_correlations(*outputs).cpu().numpy()
        if valid is not None:
            self.valid_correlations_ = (
                projection.variate_correlations(*self._outputs(valid)).cpu().numpy()
            )

    def _outputs(self, views: Views) -> tuple[torch.Tensor, torch.Tensor]:
        """(f1(x1), f2(x2)) for every point of ``views`` in evaluation mode, on the device."""
        out = self.batched(lambda b: dict(zip(("h1", "h2"), self.module_.encode(b))), views.data)
        return (
            torch.as_tensor(out["h1"], device=self.device_),
            torch.as_tensor(out["h2"], device=self.device_),
        )

    def represent(self, xO: Arrays) -> np.ndarray:
        """f1(x1) on the top-k canonical directions of the final linear CCA, (n, k)."""
        return self.batched(self.module_.represent, xO)
