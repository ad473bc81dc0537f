"""Multi-view data as it crosses every boundary of mmbench.

A :class:`Views` is one split (train, validation or test) of a multi-view data set: named
modalities as 2-D float32 arrays of shape ``(n, d_m)``, the names of the modalities observed at test
time (``xO``) and of those missing (``xM``), the labels, and optional group ids (e.g. XRMB
speakers). A :class:`DataSplits` bundles the three splits of one data set with what models and
metrics need to know about it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

Likelihood = Literal["gaussian", "bernoulli"]


@dataclass(frozen=True)
class Modality:
    """What a model needs to know about one modality.

    likelihood: the decoder family that suits it ("bernoulli" for data in [0, 1] such as pixels or
        binary tags, "gaussian" otherwise).
    image_shape: (H, W) or (H, W, C) when the modality is a flattened image, for figures.
    vocabulary: token names when the modality is a bag of words (Flickr tags), for figures.
    """

    likelihood: Likelihood = "gaussian"
    image_shape: tuple[int, ...] | None = None
    vocabulary: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Views:
    """One split of a multi-view data set.

    data: modality name -> float32 array of shape (n, d_m).
    observed: names of the modalities available at test time (xO), in order.
    missing: names of the modalities to generate at test time (xM), in order.
    labels: int64 array (n,) with classes 0..n_classes-1, or a {0,1} array (n, n_labels) for
        multi-label data.
    groups: optional int array (n,) of group ids (e.g. speakers).
    modalities: modality name -> :class:`Modality`.
    """

    data: Mapping[str, np.ndarray]
    observed: tuple[str, ...]
    missing: tuple[str, ...]
    labels: np.ndarray
    groups: np.ndarray | None = None
    modalities: Mapping[str, Modality] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.observed:
            raise ValueError("Views.observed is empty: at least one modality must be observed")
        unknown = [m for m in (*self.observed, *self.missing) if m not in self.data]
        if unknown:
            raise ValueError(
                f"Views names modalities {unknown} that are not in data (has {sorted(self.data)})"
            )
        overlap = set(self.observed) & set(self.missing)
        if overlap:
            raise ValueError(f"modalities {sorted(overlap)} are both observed and missing")
        n = len(self.labels)
        for name, array in self.data.items():
            if array.ndim != 2 or array.shape[0] != n:
                raise ValueError(
                    f"modality {name!r} has shape {array.shape}; expected (n={n}, d) "
                    "with one row per label (flatten images to 2-D)"
                )
        if self.labels.ndim not in (1, 2):
            raise ValueError(
                f"labels have shape {self.labels.shape}; expected (n,) class ids "
                "or (n, n_labels) multi-label indicators"
            )
        if self.groups is not None and self.groups.shape != (n,):
            raise ValueError(f"groups have shape {self.groups.shape}; expected ({n},)")

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def multilabel(self) -> bool:
        return self.labels.ndim == 2

    @property
    def xO(self) -> dict[str, np.ndarray]:
        """The observed modalities, name -> (n, d)."""
        return {m: self.data[m] for m in self.observed}

    @property
    def xM(self) -> dict[str, np.ndarray]:
        """The missing modalities, name -> (n, d)."""
        return {m: self.data[m] for m in self.missing}

    def dim(self, modality: str) -> int:
        return self.data[modality].shape[1]

    def modality(self, name: str) -> Modality:
        return self.modalities.get(name, Modality())

    def subset(self, index: np.ndarray) -> Views:
        """The rows ``index`` (an int or boolean array) of every array."""
        return replace(
            self,
            data={m: a[index] for m, a in self.data.items()},
            labels=self.labels[index],
            groups=None if self.groups is None else self.groups[index],
        )

    def with_roles(self, observed: tuple[str, ...], missing: tuple[str, ...]) -> Views:
        """The same data with other modalities observed / missing (e.g. 3-modality MNIST)."""
        return replace(self, observed=tuple(observed), missing=tuple(missing))


@dataclass(frozen=True)
class DataSplits:
    """A data set ready for a run: train / validation / test :class:`Views` of the same roles.

    n_classes: number of classes (single-label) or of labels (multi-label).
    info: provenance a record should keep (source files, pairing indices' file, fold, ...).
    """

    name: str
    train: Views
    valid: Views
    test: Views
    n_classes: int
    info: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in ("valid", "test"):
            other: Views = getattr(self, split)
            if (other.observed, other.missing) != (self.train.observed, self.train.missing):
                raise ValueError(
                    f"{self.name}: the {split} split has other observed/missing "
                    "modalities than the train split"
                )
            for m in self.train.data:
                if other.dim(m) != self.train.dim(m):
                    raise ValueError(
                        f"{self.name}: modality {m!r} has {other.dim(m)} features in "
                        f"{split} but {self.train.dim(m)} in train"
                    )

    @property
    def multilabel(self) -> bool:
        return self.train.multilabel


def standardize(splits: DataSplits, modalities: tuple[str, ...]) -> DataSplits:
    """Z-score ``modalities`` with the mean and std of the training split only.

    Features with zero training variance are centred and left unscaled.
    """

    def fitted(views: Views) -> Views:
        data = dict(views.data)
        for m in modalities:
            data[m] = ((views.data[m] - means[m]) / stds[m]).astype(np.float32)
        return replace(views, data=data)

    means = {m: splits.train.data[m].mean(axis=0) for m in modalities}
    stds = {}
    for m in modalities:
        std = splits.train.data[m].std(axis=0)
        stds[m] = np.where(std > 0, std, 1.0)
    return replace(
        splits, train=fitted(splits.train), valid=fitted(splits.valid), test=fitted(splits.test)
    )
