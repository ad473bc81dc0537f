"""DCCA and DCCAE: the objective against canonical correlations computed independently with scipy,
convergence of linear DCCA to closed-form CCA, DCCAE's reconstruction part against its parts and
against PCA's optimum, and training on the embedded MNIST."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from baselines.cca import CCA
from baselines.dcca import DCCA
from baselines.dccae import DCCAE
from mmbench.correlation import (
    canonical_projection,
    moments,
    total_correlation,
    whitened_cross_covariance,
)
from mmbench.data import load_dataset
from mmbench.model import DataSpec
from mmbench.trainer import TrainConfig


def scipy_canonical_correlations(h1, h2, reg1, reg2):
    """Descending canonical correlations: square roots of the eigenvalues of
    (S11 + r1 I)^-1 S12 (S22 + r2 I)^-1 S21."""
    h1, h2 = np.asarray(h1, np.float64), np.asarray(h2, np.float64)
    d1 = h1.shape[1]
    cov = np.cov(np.hstack([h1, h2]).T)
    s11 = cov[:d1, :d1] + reg1 * np.eye(d1)
    s22 = cov[d1:, d1:] + reg2 * np.eye(h2.shape[1])
    s12 = cov[:d1, d1:]
    product = scipy.linalg.solve(s11, s12) @ scipy.linalg.solve(s22, s12.T)
    values = np.sort(np.real(scipy.linalg.eigvals(product)))[::-1][: min(d1, h2.shape[1])]
    return np.sqrt(np.clip(values, 0, None))


def random_views(n=64, d1=12, d2=9, seed=0):
    return load_dataset("synthetic", seed=seed, n_train=n, n_valid=n, n_test=n, d1=d1, d2=d2)


def built(model, views):
    model.device_ = torch.device("cpu")
    torch.manual_seed(0)
    return model.build(DataSpec.from_views(views))


def tensors(views):
    return {m: torch.tensor(a) for m, a in views.data.items()}


@pytest.mark.parametrize("n_components, reg", [(None, 1e-4), (3, 1e-4), (4, 0.3)])
def test_dcca_loss_is_minus_the_sum_of_the_top_canonical_correlations(n_components, reg):
    views = random_views().train
    net = built(
        DCCA(latent_dim=6, hidden=(16, 16), n_components=n_components, reg1=reg, reg2=2 * reg),
        views,
    )
    batch = tensors(views)
    loss, parts = net.loss(batch)
    with torch.no_grad():
        h1, h2 = net.encoder1(batch["x1"]), net.encoder2(batch["x2"])
    expected = scipy_canonical_correlations(h1.numpy(), h2.numpy(), reg, 2 * reg)
    k = n_components or 6
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(-expected[:k].sum(), rel=1e-9, abs=1e-9)
    assert parts["correlation"].item() == pytest.approx(expected[:k].sum(), rel=1e-9)


def test_objective_gradient_matches_finite_differences_and_survives_degenerate_batches():
    rng = np.random.default_rng(0)
    h1 = torch.tensor(rng.normal(size=(30, 4)), requires_grad=True)
    h2 = torch.tensor(rng.normal(size=(30, 3)) + h1.detach().numpy()[:, :3], requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: total_correlation(a, b, 2, 1e-3, 1e-3), (h1, h2))
    # Two constant output units (dead ReLUs): their covariance is the ridge alone, with a
    # repeated eigenvalue; the Cholesky whitening keeps the gradient finite.
    dead = torch.cat([h1.detach()[:, :2], torch.zeros(30, 2)], 1).requires_grad_()
    total_correlation(dead, h2, None, 1e-4, 1e-4).backward()
    assert torch.isfinite(dead.grad).all()
    # A one-point batch (the tail of an epoch) has zero covariance: no correlation, no gradient.
    single = h1.detach()[:1].clone().requires_grad_()
    value = total_correlation(single, h2.detach()[:1], None, 1e-4, 1e-4)
    value.backward()
    assert value.item() == 0.0 and torch.equal(single.grad, torch.zeros_like(single))


def test_linear_dcca_reaches_the_closed_form_cca():
    """With linear encoders to 5 outputs and full-batch training, DCCA maximises the same
    objective as closed-form CCA with 5 components, so its final linear CCA must find the same
    top-5 correlations. Tolerances: 0.005 in-sample (optimisation error; the closed form is the
    global maximum, so DCCA may not exceed it), 0.01 held-out (the weakest pair, rho = 0.2, has
    a flat objective around its direction)."""
    splits = load_dataset("synthetic", seed=0, n_train=5000, n_valid=5000)
    closed = CCA(n_components=5, reg1=1e-6, reg2=1e-6)
    closed.fit(splits.train, splits.valid)
    deep = DCCA(latent_dim=5, hidden=(), reg1=1e-6, reg2=1e-6)
    deep.fit(
        splits.train,
        splits.valid,
        trainer=TrainConfig(epochs=300, batch_size=5000, lr=0.05, patience=None),
    )
    assert deep.train_correlations_.sum() <= closed.train_correlations_.sum() + 1e-6
    np.testing.assert_allclose(deep.train_correlations_, closed.train_correlations_, atol=0.005)
    np.testing.assert_allclose(deep.valid_correlations_, closed.valid_correlations_, atol=0.01)
    # The loss on the whole training split is minus the final CCA's total (regularised)
    # correlation; the reported in-sample correlations are the variates' Pearson ones, which the
    # tiny ridge barely separates from it.
    with torch.no_grad():
        loss, _ = deep.module_.loss(deep.tensors(splits.train))
        outputs = deep._outputs(splits.train)
    regularised = canonical_projection(moments(*outputs), 5, 1e-6, 1e-6).correlations
    assert -loss.item() == pytest.approx(regularised.sum().item(), rel=1e-9)
    assert -loss.item() == pytest.approx(deep.train_correlations_.sum(), rel=1e-4)
    assert deep.represent(splits.test.xO).shape == (splits.test.n, 5)


def test_final_projection_whitens_the_training_outputs_and_survives_a_checkpoint(tmp_path):
    splits = random_views(n=400)
    model = DCCA(latent_dim=6, hidden=(16,), n_components=4, reg1=0.0, reg2=0.0)
    model.fit(splits.train, splits.valid, trainer=TrainConfig(epochs=3, batch_size=100, lr=1e-2))
    z = model.represent(splits.train.xO)
    # Canonical variates of the fitting data: zero mean, identity covariance.
    np.testing.assert_allclose(np.cov(z.T), np.eye(4), atol=1e-4)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-4)
    model.save(tmp_path / "dcca.pt")
    again = DCCA.load(tmp_path / "dcca.pt")
    np.testing.assert_array_equal(again.represent(splits.test.xO), model.represent(splits.test.xO))


def test_dccae_loss_is_the_correlation_plus_weighted_squared_errors():
    views = random_views().train
    lam = 0.37
    net = built(
        DCCAE(latent_dim=5, hidden=(16,), reconstruction_weight=lam, reg1=1e-3, reg2=1e-3), views
    )
    batch = tensors(views)
    loss, parts = net.loss(batch)
    with torch.no_grad():
        h1, h2 = net.encoder1(batch["x1"]), net.encoder2(batch["x2"])
        x1_hat, x2_hat = net.decoder1(h1).numpy(), net.decoder2(h2).numpy()
    x1, x2 = views.data["x1"], views.data["x2"]
    error1 = np.mean(np.sum((x1 - x1_hat) ** 2, axis=1))
    error2 = np.mean(np.sum((x2 - x2_hat) ** 2, axis=1))
    correlation = scipy_canonical_correlations(h1.numpy(), h2.numpy(), 1e-3, 1e-3).sum()
    assert parts["reconstruction1"].item() == pytest.approx(error1, rel=1e-5)
    assert parts["reconstruction2"].item() == pytest.approx(error2, rel=1e-5)
    assert loss.item() == pytest.approx(-correlation + lam * (error1 + error2), rel=1e-5)
    # Lambda = 0 is DCCA's objective on the same networks.
    net.config = net.config.model_copy(update={"reconstruction_weight": 0.0})
    assert net.loss(batch)[0].item() == pytest.approx(-correlation, rel=1e-9)


def test_dccae_with_a_large_weight_reconstructs_as_well_as_pca():
    """Linear autoencoders through 5 units: the least squared error is the sum of the smallest
    d - 5 covariance eigenvalues (Eckart-Young). With lambda = 100 the correlation term (at most
    5) cannot move the optimum noticeably, so training must reach that bound within 1%."""
    splits = load_dataset("synthetic", seed=0, n_train=2000, n_valid=200)
    model = DCCAE(latent_dim=5, hidden=(), decoder_hidden=(), reconstruction_weight=100.0)
    report = model.fit(
        splits.train, None, trainer=TrainConfig(epochs=300, batch_size=2000, lr=0.03, patience=None)
    )
    last = report.history[-1]
    for view, part in (("x1", "reconstruction1"), ("x2", "reconstruction2")):
        eigenvalues = np.linalg.eigvalsh(np.cov(splits.train.data[view].T, bias=True))
        bound = eigenvalues[:-5].sum()
        assert bound <= last[part] < 1.01 * bound
        assert last[part] < 0.6 * eigenvalues.sum()  # far below predicting the mean


@pytest.mark.parametrize(
    "model",
    [
        DCCA(latent_dim=10, hidden=(64,)),
        DCCAE(latent_dim=10, hidden=(64,), n_components=8, reconstruction_weight=1e-2),
    ],
)
def test_trains_on_mnist_embedded(model):
    splits = load_dataset("mnist_embedded", seed=0)
    report = model.fit(
        splits.train,
        splits.valid,
        trainer=TrainConfig(epochs=3, batch_size=500, lr=1e-3, patience=None),
    )
    assert report.epochs == 3
    assert all(math.isfinite(v) for row in report.history for v in row.values())
    k = model.config.n_components or model.config.latent_dim
    assert model.represent(splits.test.xO).shape == (splits.test.n, k)
    assert model.valid_correlations_.shape == (k,)
    assert np.isfinite(model.valid_correlations_).all()
    # Digits of the same class share strokes across the views: the top pair is correlated.
    assert model.valid_correlations_[0] > 0.3


def test_bad_input_is_a_clear_error():
    with pytest.raises(
        ValueError,
        match="^dcca: n_components: Input should be at most "
        r"latent_dim = 10 \(or None for all\), got 11$",
    ):
        DCCA(latent_dim=10, n_components=11)
    with pytest.raises(ValueError, match=r"^dccae: reconstruction_weight: .* greater than or "):
        DCCAE(reconstruction_weight=-1.0)
    views = random_views().train.with_roles(("x1", "x2"), ())
    with pytest.raises(ValueError, match="dcca: needs at least one missing modality"):
        DCCA(hidden=(8,)).fit(views, trainer=TrainConfig(epochs=1))


def test_the_training_objective_is_nan_on_a_singular_covariance_and_never_raises():
    """In a step the objective does not read the Cholesky status back (no host sync): a view
    with a constant column and no ridge gives NaN, which the trainer records as diverged; the
    closed-form path still refuses it by name."""
    rng = np.random.default_rng(0)
    h1 = torch.tensor(np.c_[rng.normal(size=(40, 2)), np.ones(40)])
    h2 = torch.tensor(rng.normal(size=(40, 3)))
    assert torch.isnan(total_correlation(h1, h2, reg1=0.0, reg2=0.0))
    assert torch.isfinite(total_correlation(h1, h2, reg1=1e-3, reg2=1e-3))
    with pytest.raises(ValueError, match="singular"):
        whitened_cross_covariance(moments(h1, h2), 0.0, 0.0)
