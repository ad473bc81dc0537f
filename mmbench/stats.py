"""What a run keeps about its test split for the reports, as numpy arrays: the Gaussian
statistics of its latent distributions (``posteriors.npz``), a few generations beside the truth
(``generated.npz``), and which test points those are. No torch here: reports read these."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

N_GENERATED_KEPT = 64  # test points whose generations a record keeps for figures


def spread(n: int, k: int) -> np.ndarray:
    """At most ``k`` indices spread evenly over 0..n-1, ascending (test splits are often sorted
    by class, so the first k points would show one class only)."""
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(np.int64))


def spread_over_classes(labels: np.ndarray, k: int) -> np.ndarray:
    """At most ``k`` indices into ``labels`` (n,) that cover every class (or ``k`` classes spread
    over them when there are more), the same number per class where the class has enough
    points, spread within each class; ascending."""
    classes = np.unique(labels)
    if len(classes) > k:
        classes = classes[spread(len(classes), k)]
    per_class = max(1, k // len(classes))
    chosen = []
    for cls in classes:
        members = np.flatnonzero(labels == cls)
        chosen.append(members[spread(len(members), per_class)])
    return np.sort(np.concatenate(chosen))


@dataclass(frozen=True)
class GaussianStats:
    """Diagonal Gaussians, one per data point: mean and log-variance, each (n, d)."""

    mean: np.ndarray
    logvar: np.ndarray


@dataclass(frozen=True)
class PosteriorStats:
    """The distributions that the collapse analysis compares (paper Fig. 2 and App. E).

    z_given_xO: the representation available at test time (CMMD's prior p(z|xO), the joint
        posterior of MVAE/MMVAE, VCCA's q(z|x1)).
    z_given_xM: the representation that sees the missing modalities (CMMD's encoder
        q(z|xO,xM,y), the joint posterior of MVAE/MMVAE, VCCA-private's private q(h2|x2)).
        None where the model has none.
    decoder_logvar: log-variance of the Gaussian decoder of the missing modalities at the test
        points, (n, d_xM); None for non-Gaussian decoders.
    Each comparison is made against N(0, I) or between the two, per latent dimension.
    """

    z_given_xO: GaussianStats
    z_given_xM: GaussianStats | None = None
    decoder_logvar: np.ndarray | None = None

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat dict for ``np.savez`` (keys like ``z_given_xO.mean``)."""
        out = {}
        for key in ("z_given_xO", "z_given_xM"):
            stats = getattr(self, key)
            if stats is not None:
                out[f"{key}.mean"], out[f"{key}.logvar"] = stats.mean, stats.logvar
        if self.decoder_logvar is not None:
            out["decoder_logvar"] = self.decoder_logvar
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> PosteriorStats:
        def stats(key):
            if f"{key}.mean" not in arrays:
                return None
            return GaussianStats(arrays[f"{key}.mean"], arrays[f"{key}.logvar"])

        return cls(stats("z_given_xO"), stats("z_given_xM"), arrays.get("decoder_logvar"))


@dataclass(frozen=True)
class Generations:
    """A model's generations of the missing modalities at a few test points, beside the truth.

    index: the test points shown, (k,) indices into the test split (None: not kept).
    labels: their classes, (k,) (None: not kept, or multi-label data).
    generated, truth: missing modality -> (k, d_m). observed: observed modality -> (k, d_m).
    vocabulary: modality -> (d_m,) words, for modalities that are tags (e.g. Flickr's).
    """

    generated: dict[str, np.ndarray]
    truth: dict[str, np.ndarray]
    observed: dict[str, np.ndarray] = field(default_factory=dict)
    vocabulary: dict[str, np.ndarray] = field(default_factory=dict)
    index: np.ndarray | None = None
    labels: np.ndarray | None = None

    PARTS = ("generated", "truth", "observed", "vocabulary")

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat dict for ``np.savez``: ``index``, ``labels`` and keys like ``truth.x2``."""
        out = {
            key: value
            for key, value in (("index", self.index), ("labels", self.labels))
            if value is not None
        }
        for part in self.PARTS:
            out.update({f"{part}.{m}": array for m, array in getattr(self, part).items()})
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Generations:
        parts: dict[str, dict[str, np.ndarray]] = {part: {} for part in cls.PARTS}
        for key, array in arrays.items():
            part, _, modality = key.partition(".")
            if part in parts:
                parts[part][modality] = array
        return cls(**parts, index=arrays.get("index"), labels=arrays.get("labels"))
