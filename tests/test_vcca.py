"""VCCA and VCCA-private: the objective against the formulas written out, test-time wiring,
dropout on the latents, planted posterior collapse, and training on real digits."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from baselines.vcca import VCCA, VCCAPrivate
from mmbench.metrics import collapsed_dimensions, kl_to_standard_normal
from mmbench.model import DataSpec
from mmbench.report.collapse import panel_values
from mmbench.trainer import TrainConfig
from mmbench.views import Modality, Views

SMALL = dict(latent_dim=3, hidden=(8,), dropout=0.0)


def small_views(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return Views(
        {
            "x1": rng.uniform(size=(n, 6)).astype(np.float32),
            "x2": rng.normal(size=(n, 5)).astype(np.float32),
        },
        ("x1",),
        ("x2",),
        rng.integers(0, 3, n),
        modalities={"x1": Modality("bernoulli"), "x2": Modality("gaussian")},
    )


def network(cls, views, **params):
    torch.manual_seed(0)
    return cls(**{**SMALL, **params}).build(DataSpec.from_views(views, 3))


def gaussian_params(encoder, x):
    body, head = encoder
    h = body(x)
    return head.mean(h), head.logvar(h)


def log_bernoulli(x, logits):
    return (x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)).sum(1)


def log_gaussian(x, mean, logvar):
    return -0.5 * (np.log(2 * np.pi) + logvar + (x - mean) ** 2 / logvar.exp()).sum(1)


def kl_standard(mean, logvar):
    return 0.5 * (logvar.exp() + mean**2 - 1 - logvar).sum(1)


@pytest.mark.parametrize("cls", [VCCA, VCCAPrivate])
def test_loss_is_the_negative_elbo_written_out(cls):
    views = small_views()
    net = network(cls, views, private_dim=2) if cls is VCCAPrivate else network(cls, views)
    batch = {m: torch.tensor(a) for m, a in views.data.items()}
    torch.manual_seed(7)
    loss, parts = net.loss(batch)
    torch.manual_seed(7)
    noise_z = torch.randn(views.n, 3)
    noise_h = [torch.randn(views.n, 2), torch.randn(views.n, 2)] if cls is VCCAPrivate else None

    x1, x2 = batch["x1"], batch["x2"]
    mean, logvar = gaussian_params(net.shared_encoder, x1)
    z = mean + torch.exp(0.5 * logvar) * noise_z
    kl = kl_standard(mean, logvar)
    codes = {"x1": z, "x2": z}
    if cls is VCCAPrivate:
        for (view, x), noise in zip((("x1", x1), ("x2", x2)), noise_h):
            mean_h, logvar_h = gaussian_params(net.private_encoders[view], x)
            codes[view] = torch.cat([z, mean_h + torch.exp(0.5 * logvar_h) * noise], 1)
            kl = kl + kl_standard(mean_h, logvar_h)
    decoder1, decoder2 = net.decoders["x1"], net.decoders["x2"]
    log_lik1 = log_bernoulli(x1, decoder1.heads["x1"].logits(decoder1.body(codes["x1"])))
    head2, h2 = decoder2.heads["x2"], decoder2.body(codes["x2"])
    log_lik2 = log_gaussian(x2, head2.mean(h2), head2.logvar.expand_as(x2))
    expected = (kl - log_lik1 - log_lik2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert parts["kl_z"].item() == pytest.approx(kl_standard(mean, logvar).mean().item(), rel=1e-5)


def test_latent_dropout_acts_on_the_decoders_input_in_training_only():
    views = small_views(n=400)
    net = network(VCCAPrivate, views, private_dim=2, latent_dropout=0.5)
    seen = []
    net.decoders["x2"].body.register_forward_hook(lambda mod, inputs, out: seen.append(inputs[0]))
    batch = {m: torch.tensor(a) for m, a in views.data.items()}
    net.train()
    net.loss(batch)
    zeros = (seen[-1] == 0).float().mean().item()
    assert zeros == pytest.approx(0.5, abs=0.05)  # 2,000 draws: standard error 0.011
    net.eval()
    net.loss(batch)
    assert (seen[-1] != 0).all()


def fitted(cls, views, **params):
    model = cls(**{**SMALL, **params})
    model.fit(views, None, trainer=TrainConfig(epochs=1, batch_size=8, lr=1e-3))
    return model


def test_private_variant_generates_with_h2_at_its_prior_mean_and_reports_q_h2_as_z_given_xM():
    views = small_views()
    model = fitted(
        VCCAPrivate, views, private_dim=2, decoder_variance={"x1": 1.0, "x2": 0.01}
    )  # XRMB's fixed stds 1.0, 0.1
    net = model.module_
    with torch.no_grad():
        x1, x2 = torch.tensor(views.data["x1"]), torch.tensor(views.data["x2"])
        mean_z, logvar_z = gaussian_params(net.shared_encoder, x1)
        mean_h2, logvar_h2 = gaussian_params(net.private_encoders["x2"], x2)
        decoder = net.decoders["x2"]
        code = torch.cat([mean_z, torch.zeros(views.n, 2)], 1)
        expected_x2 = decoder.heads["x2"].mean(decoder.body(code))
    assert np.allclose(model.represent(views.xO), mean_z.numpy(), atol=1e-6)
    assert np.allclose(model.generate(views.xO)["x2"], expected_x2.numpy(), atol=1e-6)
    posteriors = model.posteriors(views)
    assert np.allclose(posteriors.z_given_xO.mean, mean_z.numpy(), atol=1e-6)
    assert np.allclose(posteriors.z_given_xO.logvar, logvar_z.numpy(), atol=1e-6)
    assert np.allclose(posteriors.z_given_xM.mean, mean_h2.numpy(), atol=1e-6)
    assert np.allclose(posteriors.z_given_xM.logvar, logvar_h2.numpy(), atol=1e-6)
    assert np.allclose(posteriors.decoder_logvar, np.log(0.01))
    both = VCCAPrivate(**SMALL, private_dim=2, representation="shared+private")
    both.fit(views, None, trainer=TrainConfig(epochs=1, batch_size=8))
    assert both.represent(views.xO).shape == (views.n, 3 + 2)


def test_collapse_panels_of_vcca_private_leave_out_the_kl_between_latents_of_other_sizes():
    model = fitted(VCCAPrivate, small_views(), private_dim=2)
    values = panel_values(model.posteriors(small_views()))
    assert sorted(values) == ["decoder_variance", "kl_xM_prior", "kl_xO_prior"]
    assert values["kl_xO_prior"].shape == (16, 3) and values["kl_xM_prior"].shape == (16, 2)


def test_vcca_has_no_z_given_xM():
    model = fitted(VCCA, small_views())
    posteriors = model.posteriors(small_views())
    assert posteriors.z_given_xM is None
    assert posteriors.decoder_logvar.shape == (16, 5)


def test_collapse_analysis_flags_exactly_the_planted_dimensions():
    views = small_views(n=200)
    model = fitted(VCCA, views, latent_dim=6)
    planted = [0, 4, 5]
    with torch.no_grad():
        head = model.module_.shared_encoder[1]
        head.mean.weight.zero_()
        head.logvar.weight.zero_()
        head.mean.bias.normal_()
        head.logvar.bias.fill_(-4.0)  # KL >= 0.5 (e^-4 - 1 + 4) > 1 nat whatever the mean
        head.mean.bias[planted] = 0.0  # planted: exactly N(0, 1), KL = 0
        head.logvar.bias[planted] = 0.0
    kl = kl_to_standard_normal(model.posteriors(views).z_given_xO)
    assert list(collapsed_dimensions(kl, eps=1e-9)) == planted
    assert list(collapsed_dimensions(kl, eps=1.0)) == planted


@pytest.mark.parametrize("cls", [VCCA, VCCAPrivate])
def test_trains_on_embedded_mnist_and_returns_documented_shapes(
    digits, check_trained_on_digits, cls
):
    train, valid, test = digits
    model = cls(latent_dim=8, hidden=(64,))
    report = model.fit(train, valid, trainer=TrainConfig(epochs=3, batch_size=100, lr=1e-3))
    posteriors = check_trained_on_digits(model, report, test, latent_dim=8)
    if cls is VCCAPrivate:
        assert posteriors.z_given_xM.mean.shape == (test.n, 30)


def test_three_modalities_two_missing(digits):
    train, valid, test = [
        replace(
            v,
            data={**v.data, "x3": 1.0 - v.data["x1"]},
            modalities={**v.modalities, "x3": Modality("bernoulli")},
            missing=("x2", "x3"),
        )
        for v in digits
    ]
    model = VCCAPrivate(latent_dim=8, private_dim=4, hidden=(64,))
    model.fit(train, valid, trainer=TrainConfig(epochs=1, batch_size=100, lr=1e-3))
    generated = model.generate(test.xO)
    assert {m: g.shape for m, g in generated.items()} == {"x2": (test.n, 784), "x3": (test.n, 784)}
    assert model.posteriors(test).decoder_logvar.shape == (test.n, 784)  # x2 only: Gaussian


def test_bad_hyper_parameters_are_one_line_errors():
    with pytest.raises(ValueError, match="latent_dropout"):
        VCCA(latent_dropout=1.0)
    with pytest.raises(ValueError, match="representation"):
        VCCAPrivate(representation="h1")
    with pytest.raises(ValueError, match="decoder_variance names"):
        network(VCCA, small_views(), decoder_variance={"x7": 1.0})
