"""CMMD's objective against an independent computation, its wiring, and its behaviour on data
with a known answer."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cmmd import CMMD
from mmbench.data import load_dataset
from mmbench.metrics import error_pct, rmse
from mmbench.model import DataSpec
from mmbench.trainer import TrainConfig
from mmbench.views import Modality, Views

SMALL = dict(
    latent_dim=4,
    encoder_hidden=(16,),
    prior_hidden=(16,),
    decoder_hidden=(16,),
    classifier_hidden=(8,),
)


def small_batch(n=32, d1=6, d2=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    views = Views(
        {
            "x1": rng.normal(size=(n, d1)).astype(np.float32),
            "x2": rng.normal(size=(n, d2)).astype(np.float32),
        },
        ("x1",),
        ("x2",),
        rng.integers(0, classes, n),
        modalities={"x2": Modality("gaussian")},
    )
    return views


def network(views, **params):
    model = CMMD(**{**SMALL, "dropout": 0.0, **params})
    spec = DataSpec.from_views(views, 3)
    torch.manual_seed(0)
    return model.build(spec)


def batch_of(views):
    return {
        "x1": torch.tensor(views.data["x1"]),
        "x2": torch.tensor(views.data["x2"]),
        "y": torch.tensor(views.labels),
    }


def gaussian_params(net, x):
    body, head = net
    h = body(x)
    return head.mean(h), head.logvar(h)


def independent_negative_elbo(net, batch, noise, classifier_on_prior):
    """-[log p(x2|x1,z) + log p(y|z) - KL(q||p)], batch mean, written from the formulas."""
    x1, x2, y = batch["x1"], batch["x2"], batch["y"]
    onehot = F.one_hot(y, 3).float()
    mean_q, logvar_q = gaussian_params(net.encoder, torch.cat([x1, x2, onehot], 1))
    mean_p, logvar_p = gaussian_params(net.conditional_prior, x1)
    z_q = mean_q + torch.exp(0.5 * logvar_q) * noise
    z_p = mean_p + torch.exp(0.5 * logvar_p) * noise
    h = net.decoder_body(torch.cat([x1, z_q], 1))
    head = net.decoder_heads["x2"]
    mu, logvar = head.mean(h), head.logvar(h)
    log_lik = -0.5 * (math.log(2 * math.pi) + logvar + (x2 - mu) ** 2 / torch.exp(logvar)).sum(1)
    logits = net.classifier[1].logits(net.classifier[0](z_p if classifier_on_prior else z_q))
    log_py = torch.log_softmax(logits, 1).gather(1, y[:, None]).squeeze(1)
    kl = 0.5 * (
        logvar_p
        - logvar_q
        + (torch.exp(logvar_q) + (mean_q - mean_p) ** 2) / torch.exp(logvar_p)
        - 1
    ).sum(1)
    return -(log_lik + log_py - kl).mean(), log_py


def test_omega_one_gives_the_negative_elbo_of_eq1():
    views = small_batch()
    net = network(views, omega=1.0, alpha=1.0, classifier_input="posterior")
    batch = batch_of(views)
    torch.manual_seed(7)
    loss, _ = net.loss(batch)
    torch.manual_seed(7)
    noise = torch.randn(views.n, SMALL["latent_dim"])
    expected, _ = independent_negative_elbo(net, batch, noise, classifier_on_prior=False)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_alpha_weights_the_classifier_fed_from_the_prior():
    views = small_batch()
    net = network(views, omega=1.0, alpha=10.0)
    batch = batch_of(views)
    torch.manual_seed(3)
    loss, _ = net.loss(batch)
    torch.manual_seed(3)
    noise = torch.randn(views.n, SMALL["latent_dim"])
    elbo_part, log_py = independent_negative_elbo(net, batch, noise, classifier_on_prior=True)
    # alpha = 10 adds 9 more copies of the classification term to the alpha = 1 objective.
    assert loss.item() == pytest.approx((elbo_part - 9 * log_py.mean()).item(), rel=1e-5)


def test_mmd_term_enters_with_weight_one_minus_omega_times_lambda():
    views = small_batch()
    batch = batch_of(views)
    net = network(views, omega=0.3, lambda_mmd=1000.0)
    torch.manual_seed(5)
    loss, parts = net.loss(batch)
    expected = (
        parts["reconstruction"]
        + 10.0 * parts["classification"]
        + 0.3 * parts["kl"]
        + 0.7 * 1000.0 * parts["mmd"]
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_gradients_reach_every_sub_network():
    views = small_batch()
    net = network(views, omega=0.5)
    loss, _ = net.loss(batch_of(views))
    loss.backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_dropout_is_off_in_evaluation():
    splits = load_dataset("synthetic", n_train=300, n_valid=100, n_test=100)
    model = CMMD(**{**SMALL, "dropout": 0.5})
    model.fit(splits.train, splits.valid, trainer=TrainConfig(epochs=2, batch_size=50, lr=1e-3))
    assert not model.module_.training
    first, second = model.predict_proba(splits.test.xO), model.predict_proba(splits.test.xO)
    assert np.array_equal(first, second)
    # In training mode dropout changes the prior mean, so evaluation really switched it off.
    x1 = torch.tensor(splits.test.data["x1"])
    model.module_.train()
    noisy = model.module_.conditional_prior(x1).base_dist.loc
    model.module_.eval()
    assert not torch.allclose(noisy, torch.tensor(model.represent(splits.test.xO)))


@pytest.fixture(scope="module")
def fitted_on_synthetic():
    splits = load_dataset("synthetic", seed=0, n_train=3000, n_valid=500, n_test=2000)
    model = CMMD(
        omega=0.5,
        latent_dim=8,
        encoder_hidden=(64,),
        prior_hidden=(64,),
        decoder_hidden=(64,),
        classifier_hidden=(32,),
        dropout=0.0,
    )
    model.fit(
        splits.train,
        splits.valid,
        trainer=TrainConfig(epochs=30, batch_size=100, lr=3e-3, patience=5, seed=0),
    )
    return splits, model


def test_classification_on_synthetic_is_far_below_chance(fitted_on_synthetic):
    splits, model = fitted_on_synthetic
    error = error_pct(splits.test.labels, model.predict_proba(splits.test.xO))
    chance = 100 * (1 - np.bincount(splits.test.labels).max() / splits.test.n)
    assert error < 0.5 * chance


def test_generation_on_synthetic_beats_the_mean_and_nears_the_optimum(fitted_on_synthetic):
    splits, model = fitted_on_synthetic
    truth, x1 = splits.test.data["x2"], splits.test.data["x1"]
    generated = model.generate(splits.test.xO)["x2"]
    mean_predictor = rmse(truth, np.broadcast_to(splits.train.data["x2"].mean(0), truth.shape))
    optimum = rmse(truth, splits.info["model"].expected_x2_given_x1(x1))
    ours = rmse(truth, generated)
    assert ours < mean_predictor - 0.5 * (mean_predictor - optimum)
    assert ours >= optimum - 0.02  # no model beats E[x2 | x1] beyond sampling noise


def test_posteriors_have_documented_shapes(fitted_on_synthetic):
    splits, model = fitted_on_synthetic
    stats = model.posteriors(splits.test)
    assert stats.z_given_xO.mean.shape == (splits.test.n, 8)
    assert stats.z_given_xM.logvar.shape == (splits.test.n, 8)
    assert stats.decoder_logvar.shape == (splits.test.n, 15)


def test_invalid_hyper_parameters_are_named():
    with pytest.raises(ValueError, match="omega"):
        CMMD(omega=1.5)
    with pytest.raises(ValueError, match="classifier_input"):
        CMMD(classifier_input="both")
