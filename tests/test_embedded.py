"""Embedded data against hand-made expectations and the synthetic model's closed forms."""

import numpy as np
import pytest
from scipy.linalg import eigh

from mmbench.data import load_dataset
from mmbench.data.embedded import (
    LinearGaussianModel,
    noisy_two_view,
    rotate_images,
    stratified_split,
)


def test_rotation_by_90_degrees_is_a_counter_clockwise_quarter_turn():
    image = np.zeros((1, 5, 5), dtype=np.float32)
    image[0, 0, 2] = 1.0  # top centre
    rotated = rotate_images(image, np.array([90.0]))
    # counter-clockwise on screen: top centre goes to left centre
    assert np.allclose(rotated[0], np.rot90(image[0]), atol=1e-5)
    assert np.allclose(rotate_images(image, np.array([0.0])), image, atol=1e-6)


def test_noisy_two_view_construction():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 50)
    images = np.zeros((100, 4, 4), dtype=np.float32)
    images[labels == 1] = 0.5  # class 1 images are uniformly 0.5, class 0 all zeros
    view1, view2 = noisy_two_view(images, labels, rng, max_angle=0.0)
    assert np.allclose(view1, images.reshape(100, -1), atol=1e-6)
    assert view2.min() >= 0.0 and view2.max() <= 1.0
    # view 2 of class 0 is pure U[0,1) noise; of class 1 it is 0.5 + noise clipped at 1
    assert view2[labels == 0].mean() == pytest.approx(0.5, abs=0.03)
    assert view2[labels == 1].min() >= 0.5
    assert np.mean(view2[labels == 1] == 1.0) == pytest.approx(0.5, abs=0.05)


def test_stratified_split_keeps_class_proportions_and_partitions():
    labels = np.repeat([0, 1, 2], [100, 50, 10])
    parts = stratified_split(labels, (0.6, 0.2, 0.2), np.random.default_rng(1))
    assert sorted(np.concatenate(parts)) == list(range(160))
    assert [np.bincount(labels[p], minlength=3).tolist() for p in parts] == [
        [60, 30, 6],
        [20, 10, 2],
        [20, 10, 2],
    ]


def test_mnist_embedded_is_real_reproducible_and_stratified():
    a, b = load_dataset("mnist_embedded", seed=3), load_dataset("mnist_embedded", seed=3)
    assert (a.train.n, a.valid.n, a.test.n) == (3000, 1000, 1000)
    assert np.array_equal(a.test.data["x2"], b.test.data["x2"])
    assert np.bincount(a.test.labels).tolist() == [100] * 10
    assert a.train.data["x1"].shape[1] == 784 and a.train.observed == ("x1",)
    assert a.train.modality("x1").image_shape == (28, 28)


def sample_canonical_correlations(x1, x2, k):
    """Canonical correlations from the generalized eigenproblem S12 S22^-1 S21 w = r^2 S11 w."""
    x1, x2 = x1 - x1.mean(0), x2 - x2.mean(0)
    n = len(x1)
    s11, s22, s12 = x1.T @ x1 / n, x2.T @ x2 / n, x1.T @ x2 / n
    values = eigh(s12 @ np.linalg.solve(s22, s12.T), s11, eigvals_only=True)
    return np.sqrt(np.clip(np.sort(values)[::-1][:k], 0, None))


def test_synthetic_model_has_its_stated_canonical_correlations():
    model = LinearGaussianModel.random((0.9, 0.6, 0.3), d1=6, d2=5, n_classes=2, seed=4)
    x1, x2, _, _ = model.sample(40_000, np.random.default_rng(0))
    assert np.allclose(sample_canonical_correlations(x1, x2, 4), [0.9, 0.6, 0.3, 0.0], atol=0.015)


def test_synthetic_posterior_and_conditional_mean_are_exact():
    model = LinearGaussianModel.random((0.9, 0.5), d1=4, d2=3, n_classes=2, seed=2)
    x1, x2, labels, z = model.sample(50_000, np.random.default_rng(1))
    mean, variance = model.posterior_given_x1(x1)
    residual = z - mean
    assert np.allclose(residual.mean(0), 0, atol=0.02)
    assert np.allclose(residual.var(0), variance, atol=0.02)
    # E[x2 | x1] leaves a residual uncorrelated with x1 (the least-squares optimum)
    x2_residual = x2 - model.expected_x2_given_x1(x1)
    assert np.abs(np.corrcoef(x1.T, x2_residual.T)[:4, 4:]).max() < 0.02
    assert np.array_equal(labels, np.argmax(z[:, :2], axis=1))
