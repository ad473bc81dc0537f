"""Deep canonically correlated autoencoders (Wang, Arora, Livescu & Bilmes 2015).

DCCA's networks f1, f2 plus decoders g1, g2 that reconstruct each view from its own network's
output. The loss of a batch (minimised; the validation loss is the same objective):

    - sum of the top-k canonical correlations of (f1(x1), f2(x2))
    + lambda * mean over the batch of ( ||x1 - g1(f1(x1))||^2 + ||x2 - g2(f2(x2))||^2 )

with squared errors summed over features, as in Wang et al.'s Eq. 5. The representation is, as for
DCCA, f1(x1) on the final linear CCA's top-k directions.
"""

from __future__ import annotations

import torch
from pydantic import Field

from baselines.dcca import DCCA, DCCAConfig, DCCANetwork, feedforward
from mmbench.config import Layers, NonNegativeReal
from mmbench.model import DataSpec, concat
from mmbench.nn import decoder_layers
from mmbench.trainer import Batch, Progress


class DCCAEConfig(DCCAConfig):
    """DCCA's hyper-parameters, and the autoencoders'.

    The default reconstruction_weight 0.1 had the best validation linear-SVM error and held-out
    total correlation among {1e-3, 1e-2, 0.1, 1} on ``mnist_embedded`` (784-512-512-20, batch
    100, one seed). With a large weight the validation loss, the same objective as training, is
    dominated by reconstruction.
    """

    reconstruction_weight: NonNegativeReal = Field(
        0.1,
        description="lambda, the weight of the summed squared reconstruction errors (Wang "
        "et al. tune it on a log grid)",
    )
    decoder_hidden: Layers | None = Field(
        None,
        description="hidden layers of both decoders, whose output layer is linear "
        "(None: hidden reversed)",
    )


class DCCAENetwork(DCCANetwork):
    config: DCCAEConfig

    def __init__(self, spec: DataSpec, config: DCCAEConfig):
        super().__init__(spec, config)
        hidden = decoder_layers(config.hidden, config.decoder_hidden)
        self.decoder1 = feedforward(
            config.latent_dim, hidden, spec.observed_dim, config.activation, config.dropout
        )
        self.decoder2 = feedforward(
            config.latent_dim, hidden, spec.missing_dim, config.activation, config.dropout
        )

    def loss(
        self, batch: Batch, progress: Progress | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x1, x2 = concat(batch, self.spec.observed), concat(batch, self.spec.missing)
        h1, h2 = self.encoder1(x1), self.encoder2(x2)
        correlation = self.correlation(h1, h2)
        reconstruction1 = (self.decoder1(h1) - x1).square().sum(1).mean()
        reconstruction2 = (self.decoder2(h2) - x2).square().sum(1).mean()
        loss = -correlation + self.config.reconstruction_weight * (
            reconstruction1 + reconstruction2
        )
        return loss, {
            "correlation": correlation,
            "reconstruction1": reconstruction1,
            "reconstruction2": reconstruction2,
        }


class DCCAE(DCCA):
    """DCCA with an autoencoder per view (Wang et al. 2015)."""

    name = "dccae"
    config_class = DCCAEConfig
    network_class = DCCAENetwork
