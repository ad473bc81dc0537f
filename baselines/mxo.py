"""M-xO: a classifier that sees the observed modalities only (the paper's lower bar).

Its capacity matches CMMD's test-time path: the conditional prior's MLP and a linear layer to the
latent size (the representation), then the classifier's MLP.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.distributions import Bernoulli, Categorical, Independent

from mmbench.config import HiddenActivation, HiddenDropout, Layers, ModelConfig, PositiveInt
from mmbench.model import Arrays, DataSpec, TorchModel, concat
from mmbench.nn import MLP, CategoricalHead, class_probabilities, stochastic_mlp
from mmbench.trainer import Batch, Progress


class MxOConfig(ModelConfig):
    """M-xO's hyper-parameters: CMMD's test-time capacity by default."""

    test_params: ClassVar[dict[str, Any]] = {
        "hidden": (32,),
        "latent_dim": 6,
        "classifier_hidden": (16,),
    }

    hidden: Layers = Field(
        (1024, 1024, 1024), description="hidden layers on xO (CMMD's prior_hidden)"
    )
    latent_dim: PositiveInt = Field(50, description="size of the representation")
    classifier_hidden: Layers = Field((50, 50), description="hidden layers of the classifier")
    activation: HiddenActivation = "softplus"
    dropout: HiddenDropout = 0.2


class MxONetwork(nn.Module):
    def __init__(self, spec: DataSpec, config: MxOConfig):
        super().__init__()
        self.spec = spec
        body = MLP(spec.observed_dim, config.hidden, config.activation, config.dropout)
        self.encoder = nn.Sequential(body, nn.Linear(body.out_dim, config.latent_dim))
        self.classifier = stochastic_mlp(
            config.latent_dim,
            config.classifier_hidden,
            lambda width: CategoricalHead(width, spec.n_classes, spec.multilabel),
            config.activation,
            config.dropout,
        )

    def predict(self, batch: Batch) -> Independent[Bernoulli] | Categorical:
        return self.classifier(self.encoder(concat(batch, self.spec.observed)))

    def loss(
        self, batch: Batch, progress: Progress | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        nll = -self.predict(batch).log_prob(batch["y"]).mean()
        return nll, {"classification": nll}


class MxO(TorchModel[MxOConfig, MxONetwork]):
    """Supervised classifier p(y | xO)."""

    name = "mxo"
    capabilities = frozenset({"classify"})

    def represent(self, xO: Arrays) -> np.ndarray:
        return self.batched(lambda b: self.module_.encoder(concat(b, self.spec_.observed)), xO)

    def predict_proba(self, xO: Arrays) -> np.ndarray:
        return self.batched(lambda b: class_probabilities(self.module_.predict(b)), xO)
