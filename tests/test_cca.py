"""Linear CCA and the shared correlation maths against independent answers: the synthetic model's
true canonical correlations, scipy's generalized eigenproblem, numpy's covariances and least
squares."""

import numpy as np
import pytest
import scipy.linalg
import torch

from baselines.cca import CCA
from mmbench.correlation import moments
from mmbench.data import load_dataset
from mmbench.views import Views

TRUE_CORRELATIONS = np.array([0.95, 0.9, 0.8, 0.5, 0.2])


@pytest.fixture(scope="module")
def synthetic_large():
    return load_dataset("synthetic", seed=0, n_train=20_000, n_valid=20_000, n_test=1000)


def generalized_eigen_cca(x1, x2, reg1, reg2):
    """Canonical correlations (descending) and view-1 directions from the symmetric generalized
    eigenproblem [[0, S12], [S21, 0]] w = rho [[S11 + r1 I, 0], [0, S22 + r2 I]] w."""
    d1, d2 = x1.shape[1], x2.shape[1]
    cov = np.cov(np.hstack([x1, x2]).astype(np.float64).T)
    a = np.zeros_like(cov)
    a[:d1, d1:], a[d1:, :d1] = cov[:d1, d1:], cov[d1:, :d1]
    b = np.zeros_like(cov)
    b[:d1, :d1] = cov[:d1, :d1] + reg1 * np.eye(d1)
    b[d1:, d1:] = cov[d1:, d1:] + reg2 * np.eye(d2)
    values, vectors = scipy.linalg.eigh(a, b)  # ascending; B-orthonormal eigenvectors
    order = np.argsort(values)[::-1][: min(d1, d2)]
    # w^T B w = 1 splits equally over the two views, so the view-1 part has unit
    # regularised variance after scaling by sqrt(2).
    return values[order], np.sqrt(2) * vectors[:d1, order]


def test_recovers_the_true_canonical_correlations(synthetic_large):
    """At n = 20,000 the sampling error of a canonical correlation is about
    (1 - rho^2) / sqrt(n) <= 0.007, so the estimate lies within 0.01 of the truth. The held-out
    correlation adds the sampling error of a correlation on 20,000 new points (the same 0.007) to
    the loss from slightly wrong directions, which only lowers it: within 0.02 (about 3 standard
    errors) of the truth."""
    model = CCA(n_components=5, reg1=0.0, reg2=0.0)
    report = model.fit(synthetic_large.train, synthetic_large.valid)
    np.testing.assert_allclose(model.train_correlations_, TRUE_CORRELATIONS, atol=0.01)
    np.testing.assert_allclose(model.valid_correlations_, TRUE_CORRELATIONS, atol=0.02)
    assert report.best_valid_loss == pytest.approx(-model.valid_correlations_.sum())
    assert report.history == [
        {
            "epoch": 1,
            "loss": pytest.approx(-model.train_correlations_.sum()),
            "valid_loss": pytest.approx(-model.valid_correlations_.sum()),
        }
    ]


@pytest.mark.parametrize("reg", [0.0, 0.5])
def test_matches_the_generalized_eigenproblem(reg):
    splits = load_dataset("synthetic", seed=3, n_train=3000)
    x1, x2 = splits.train.data["x1"], splits.train.data["x2"]
    expected, directions = generalized_eigen_cca(x1, x2, reg, reg)
    model = CCA(n_components=15, reg1=reg, reg2=reg)
    model.fit(splits.train)
    correlations = model.projection_.correlations.numpy()
    np.testing.assert_allclose(correlations, expected, rtol=1e-9, atol=1e-10)
    # The same directions up to sign (the first five correlations are well separated).
    weights = model.projection_.weights1.numpy()[:, :5]
    signs = np.sign((weights * directions[:, :5]).sum(0))
    np.testing.assert_allclose(weights * signs, directions[:, :5], rtol=1e-6, atol=1e-8)
    # The representation is the centred data on those directions.
    z = model.represent(splits.test.xO)
    centred = splits.test.data["x1"].astype(np.float64) - x1.astype(np.float64).mean(0)
    np.testing.assert_allclose(z[:, :5] * signs, centred @ directions[:, :5], rtol=1e-4, atol=1e-4)


def pearson(a, b):
    """numpy's Pearson correlation of each column of a with the same column of b."""
    return np.array([np.corrcoef(a[:, i], b[:, i])[0, 1] for i in range(a.shape[1])])


def test_train_and_validation_correlations_are_measured_the_same_way():
    """Both are numpy's Pearson correlations of the canonical variates on their split, so the
    training split given as validation gives the training values exactly; with a ridge the
    regularised canonical correlations are smaller (the ridge shrinks them) and are not what
    train_correlations reports."""
    splits = load_dataset("synthetic", seed=4, n_train=3000)
    model = CCA(n_components=5, reg1=2.0, reg2=2.0)
    model.fit(splits.train, splits.train)
    np.testing.assert_array_equal(model.valid_correlations_, model.train_correlations_)
    x1, x2 = (torch.as_tensor(splits.train.data[m]) for m in ("x1", "x2"))
    variates = (model.projection_.project1(x1).numpy(), model.projection_.project2(x2).numpy())
    np.testing.assert_allclose(model.train_correlations_, pearson(*variates), rtol=1e-9)
    assert np.all(model.projection_.correlations.numpy() < model.train_correlations_ - 0.01)


def test_in_sample_correlations_exceed_held_out_ones_in_expectation():
    """Unregularised CCA maximises the in-sample correlations, so on average over data sets they
    are at least those of the true directions (the truth, up to the sampling error of a
    correlation), while the held-out correlation of the fitted directions estimates their
    population correlation, at most the truth. With 20 + 15 dimensions and 150 points the
    overfitting is large: the in-sample sum exceeds the truth and the held-out one falls below."""
    train_sums, valid_sums = [], []
    for seed in range(5):
        splits = load_dataset("synthetic", seed=seed, n_train=150, n_valid=2000)
        model = CCA(n_components=5, reg1=0.0, reg2=0.0)
        model.fit(splits.train, splits.valid)
        train_sums.append(model.train_correlations_.sum())
        valid_sums.append(model.valid_correlations_.sum())
    assert np.mean(train_sums) > TRUE_CORRELATIONS.sum() > np.mean(valid_sums)


def test_full_rank_generation_is_ordinary_least_squares():
    splits = load_dataset("synthetic", seed=2, n_train=2000)
    x1, x2 = (splits.train.data[m].astype(np.float64) for m in ("x1", "x2"))
    model = CCA(n_components=15, reg1=0.0, reg2=0.0)  # min(d1 = 20, d2 = 15)
    model.fit(splits.train)
    design = np.hstack([x1, np.ones((len(x1), 1))])
    coef, *_ = np.linalg.lstsq(design, x2, rcond=None)
    test_x1 = splits.test.data["x1"].astype(np.float64)
    expected = np.hstack([test_x1, np.ones((len(test_x1), 1))]) @ coef
    np.testing.assert_allclose(model.generate(splits.test.xO)["x2"], expected, rtol=1e-4, atol=1e-4)


def test_generation_with_the_true_rank_approaches_the_conditional_mean(synthetic_large):
    model = CCA(n_components=5, reg1=0.0, reg2=0.0)
    model.fit(synthetic_large.train)
    test = synthetic_large.test
    truth = synthetic_large.info["model"].expected_x2_given_x1(test.data["x1"].astype(np.float64))
    generated = model.generate(test.xO)["x2"]
    # Estimation error of a rank-5 regression from 20,000 points, against a signal of scale ~1.
    assert np.sqrt(np.mean((generated - truth) ** 2)) < 0.03
    assert np.sqrt(np.mean(truth**2)) > 0.5


def test_several_observed_modalities_are_concatenated_into_view_one():
    splits = load_dataset("synthetic", seed=0, n_train=2000)
    train = splits.train
    x1 = train.data["x1"]
    three = Views(
        {"a": x1[:, :8], "b": x1[:, 8:], "x2": train.data["x2"]}, ("a", "b"), ("x2",), train.labels
    )
    single, split = CCA(n_components=4), CCA(n_components=4)
    single.fit(train)
    split.fit(three)
    test_x1 = splits.test.data["x1"]
    np.testing.assert_allclose(
        split.represent({"a": test_x1[:, :8], "b": test_x1[:, 8:]}),
        single.represent({"x1": test_x1}),
        rtol=1e-5,
        atol=1e-5,
    )


def test_trains_on_mnist_embedded_and_represents():
    splits = load_dataset("mnist_embedded", seed=0)
    model = CCA(n_components=10)
    model.fit(splits.train, splits.valid)
    assert model.represent(splits.test.xO).shape == (splits.test.n, 10)
    assert model.generate(splits.test.xO)["x2"].shape == splits.test.data["x2"].shape
    # Held-out correlations are lower than the in-sample ones but clearly positive with the ridge.
    assert np.all(model.valid_correlations_ < model.train_correlations_)
    assert model.valid_correlations_[:3].min() > 0.3


def test_moments_match_numpy_in_chunks():
    rng = np.random.default_rng(0)
    x1 = rng.normal(size=(1001, 7)) * 3 + 5
    x2 = x1[:, :4] @ rng.normal(size=(4, 3)) + rng.normal(size=(1001, 3))
    stats = moments(
        torch.tensor(x1, dtype=torch.float32), torch.tensor(x2, dtype=torch.float32), chunk_rows=128
    )
    cov = np.cov(np.hstack([x1, x2]).T)
    np.testing.assert_allclose(stats.cov11.numpy(), cov[:7, :7], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats.cov22.numpy(), cov[7:, 7:], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats.cov12.numpy(), cov[:7, 7:], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats.mean1.numpy(), x1.mean(0), rtol=1e-6)


def test_bad_input_is_a_clear_error():
    splits = load_dataset("synthetic", seed=0, n_train=500)
    with pytest.raises(ValueError, match="n_components=16"):
        CCA(n_components=16).fit(splits.train)
    with pytest.raises(ValueError, match="missing modality"):
        CCA().fit(splits.train.with_roles(("x1", "x2"), ()))
    with pytest.raises(ValueError, match="singular"):
        constant = Views(
            {
                "x1": np.ones((50, 3), np.float32),
                "x2": np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32),
            },
            ("x1",),
            ("x2",),
            np.zeros(50, np.int64),
        )
        CCA(n_components=2, reg1=0.0, reg2=0.0).fit(constant)
    model = CCA(n_components=3)
    model.fit(splits.train)
    with pytest.raises(ValueError, match=r"xO\['x1'\] has shape \(4, 3\); expected \(n, 20\)"):
        model.represent({"x1": np.zeros((4, 3), np.float32)})
    with pytest.raises(ValueError, match="lacks observed modalities"):
        model.represent({"x2": np.zeros((4, 15), np.float32)})


def numpy_ridge_cca(x1, x2, reg1, reg2, k):
    """The textbook closed form in float64 numpy, by eigendecompositions only: symmetric inverse
    square roots of the ridged covariances, then T T^T = U diag(rho^2) U^T for
    T = S11^-1/2 S12 S22^-1/2. Returns (the top-k correlations, view-1 weights S11^-1/2 U_k,
    view-2 weights S22^-1/2 T^T U_k / rho, the means)."""
    x1, x2 = x1.astype(np.float64), x2.astype(np.float64)
    mean1, mean2 = x1.mean(0), x2.mean(0)
    a, b = x1 - mean1, x2 - mean2
    n = len(a)

    def inverse_sqrt(covariance):
        values, vectors = np.linalg.eigh(covariance)
        return (vectors / np.sqrt(values)) @ vectors.T

    root1 = inverse_sqrt(a.T @ a / (n - 1) + reg1 * np.eye(a.shape[1]))
    root2 = inverse_sqrt(b.T @ b / (n - 1) + reg2 * np.eye(b.shape[1]))
    t = root1 @ (a.T @ b / (n - 1)) @ root2
    values, vectors = np.linalg.eigh(t @ t.T)
    top = np.argsort(values)[::-1][:k]
    rho, u = np.sqrt(values[top]), vectors[:, top]
    return rho, root1 @ u, root2 @ (t.T @ u) / rho, (mean1, mean2)


def test_exact_against_a_float64_numpy_reference_on_784_d_pixels():
    """The benchmark's setting (cca_vs_sklearn.py): 784-D pixel views, whose covariances are
    singular without the ridge (constant border pixels), 10 components, the default ridge 0.1.
    Canonical correlations in-sample and held out, and the representation, to 1e-6 of an
    eigendecomposition-only float64 reference (mmbench whitens by Cholesky factors)."""
    splits = load_dataset("mnist_embedded", seed=0)
    x1, x2 = splits.train.data["x1"], splits.train.data["x2"]
    rho, weights1, weights2, (mean1, mean2) = numpy_ridge_cca(x1, x2, 0.1, 0.1, 10)
    assert np.diff(rho).max() < -1e-3  # separated: the directions are unique up to sign
    model = CCA(n_components=10, reg1=0.1, reg2=0.1)
    model.fit(splits.train, splits.valid)

    def pearson(p, q):
        p, q = p - p.mean(0), q - q.mean(0)
        return (p * q).sum(0) / np.sqrt((p * p).sum(0) * (q * q).sum(0))

    # train and held-out correlations are both the Pearson correlations of the variates (the
    # ridge shrinks the singular values rho below them)
    train = pearson((x1 - mean1) @ weights1, (x2 - mean2) @ weights2)
    assert (train > rho).all()
    np.testing.assert_allclose(model.train_correlations_, train, rtol=0, atol=1e-6)
    valid = splits.valid.data
    heldout = pearson((valid["x1"] - mean1) @ weights1, (valid["x2"] - mean2) @ weights2)
    np.testing.assert_allclose(model.valid_correlations_, heldout, rtol=0, atol=1e-6)
    expected = (splits.test.data["x1"] - mean1) @ weights1
    z = model.represent(splits.test.xO)
    signs = np.sign((z * expected).sum(0))
    # float32 output of variates of scale ~1: 1e-6 relative to the largest
    np.testing.assert_allclose(z * signs, expected, rtol=0, atol=1e-6 * np.abs(expected).max())
