"""What tables and figures call data sets, metrics and data axes: one map, kept here.

A suite may override any entry with ``display_names: {xrmb: "XRMB (speaker folds)"}`` (saved in
``<results>/suite.json``). Data sets read from a user's own file (``npz``, ``parquet``) are
named after the suite, never after the loader, so two own-data suites never share a name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

DATASET_NAMES = {
    "mnist_noisy": "noisy MNIST",
    "mnist_embedded": "noisy MNIST (embedded digits)",
    "mnist_svhn": "MNIST-SVHN",
    "mnist3": "MNIST, rotated MNIST, SVHN",
    "xrmb": "XRMB",
    "flickr": "MIR-Flickr",
    "synthetic": "synthetic",
}
METRIC_NAMES = {
    "error_pct": "error (%)",
    "map_micro_pct": "mAP, micro-averaged (%)",
    "map_macro_pct": "mAP, macro-averaged (%)",
    "rmse": "rmse of the generated missing modalities",
    "train_seconds": "training time (s)",
    "eval_seconds": "evaluation time (s)",
}
# Loaders of a user's own file: their name says nothing about the data.
OWN_DATA_LOADERS = ("npz", "parquet")


@dataclass(frozen=True)
class DisplayNames:
    """Readable names; ``overrides`` (a suite's ``display_names``) win over the defaults, and
    ``suite`` names the data of own-data loaders."""

    overrides: Mapping[str, str] = field(default_factory=dict)
    suite: str | None = None

    def dataset(self, name: str) -> str:
        if name in self.overrides:
            return self.overrides[name]
        if name in OWN_DATA_LOADERS and self.suite:
            return self.suite
        return DATASET_NAMES.get(name, name)

    def metric(self, name: str) -> str:
        if name in self.overrides:
            return self.overrides[name]
        base, _, modality = name.partition(".")
        if base == "rmse" and modality:  # rmse.<modality>: one generated modality
            return f"rmse of {self.overrides.get(modality, modality)}"
        return METRIC_NAMES.get(name, name)

    def other(self, name: str) -> str:
        """A data axis (fold, speaker), a model label or anything else: its override or itself."""
        return self.overrides.get(name, name)
