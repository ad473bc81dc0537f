"""CMMD's presets: the loss of each written out by hand in numpy/scipy for a tiny batch with fixed
weights and noise, how a preset fills the config, and the official initialisation."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from scipy.special import log_softmax
from scipy.stats import norm

from cmmd import CMMD
from cmmd.model import PRESETS, CMMDConfig
from mmbench.config import ConfigError
from mmbench.model import DataSpec
from mmbench.views import Modality, Views

N, D1, D2, CLASSES, LATENT, HIDDEN = 5, 3, 2, 3, 2, 4
OMEGA, ALPHA, LAMBDA = 0.3, 10.0, 1000.0


def tiny_views() -> Views:
    rng = np.random.default_rng(1)
    return Views(
        {
            "x1": rng.normal(size=(N, D1)).astype(np.float32),
            "x2": rng.normal(size=(N, D2)).astype(np.float32),
        },
        ("x1",),
        ("x2",),
        np.array([0, 2, 1, 2, 0]),
        modalities={"x2": Modality("gaussian")},
    )


def random_weights(net: torch.nn.Module) -> dict[str, np.ndarray]:
    """Draw every parameter of ``net`` from N(0, 0.5^2) (float64 in numpy, copied into the
    network as float32) and return them by parameter name, as numpy float64 arrays of the
    float32 values the network holds."""
    rng = np.random.default_rng(2)
    weights = {}
    with torch.no_grad():
        for name, parameter in net.named_parameters():
            value = rng.normal(scale=0.5, size=tuple(parameter.shape))
            parameter.copy_(torch.as_tensor(value))
            weights[name] = parameter.double().numpy().copy()
    return weights


def softplus(a):
    return np.logaddexp(0.0, a)


def layer(w, prefix, a):
    """``a @ W.T + b`` of the torch Linear stored under ``prefix`` in ``w``."""
    return a @ w[f"{prefix}.weight"].T + w[f"{prefix}.bias"]


def gaussian_net(w, prefix, a):
    """(mean, logvar) of a one-hidden-layer softplus network with linear heads."""
    h = softplus(layer(w, f"{prefix}.0.0", a))
    return layer(w, f"{prefix}.1.mean", h), layer(w, f"{prefix}.1.logvar", h)


def hand_loss(w, views, eps, preset: str) -> float:
    """CMMD's loss written from the formulas (paper Eq. 5; the official code's variants)."""
    x1, x2 = (views.data[m].astype(np.float64) for m in ("x1", "x2"))
    y = views.labels
    onehot = np.eye(CLASSES)[y]
    mean_q, logvar_q = gaussian_net(w, "encoder", np.hstack([x1, x2, onehot]))
    mean_p, logvar_p = gaussian_net(w, "conditional_prior", x1)
    z_q = mean_q + np.exp(logvar_q / 2) * eps
    z_p = mean_p + np.exp(logvar_p / 2) * eps  # one noise draw for both (shared)
    h = softplus(layer(w, "decoder_body.0", np.hstack([x1, z_q])))
    mu, logvar = layer(w, "decoder_heads.x2.mean", h), layer(w, "decoder_heads.x2.logvar", h)
    log_lik = norm.logpdf(x2, mu, np.exp(logvar / 2)).sum(1)
    z_cls = mean_p if preset == "official" else z_p
    logits = layer(w, "classifier.1.logits", softplus(layer(w, "classifier.0.0", z_cls)))
    log_py = log_softmax(logits, axis=1)[np.arange(N), y]
    var_q, var_p = np.exp(logvar_q), np.exp(logvar_p)
    if preset == "official":  # the Theano code's expression, term by term
        kl = (
            0.5 * np.log(var_p).sum(1)
            - 0.5 * (1 + np.log(var_q)).sum(1)
            + (var_q / var_p).sum(1)
            + 0.5 * ((mean_q - mean_p) ** 2 / var_p).sum(1)
        )
    else:
        kl = 0.5 * (np.log(var_p / var_q) + (var_q + (mean_q - mean_p) ** 2) / var_p - 1).sum(1)
    bandwidth = LATENT**2

    def k(a, b):
        return np.exp(-cdist(a, b, "sqeuclidean") / bandwidth).mean()

    mmd = k(z_q, z_q) + k(z_p, z_p) - 2 * k(z_q, z_p)
    classification = log_py.sum() if preset == "official" else log_py.mean()
    return -log_lik.mean() - ALPHA * classification + OMEGA * kl.mean() + (1 - OMEGA) * LAMBDA * mmd


@pytest.mark.parametrize("preset", ["paper", "official"])
def test_each_preset_gives_the_loss_written_out_by_hand(preset):
    views = tiny_views()
    model = CMMD(
        preset=preset,
        omega=OMEGA,
        alpha=ALPHA,
        lambda_mmd=LAMBDA,
        latent_dim=LATENT,
        encoder_hidden=(HIDDEN,),
        prior_hidden=(HIDDEN,),
        decoder_hidden=(HIDDEN,),
        classifier_hidden=(HIDDEN,),
        dropout=0.0,
    )
    net = model.build(DataSpec.from_views(views, CLASSES))
    weights = random_weights(net)
    batch = {
        "x1": torch.tensor(views.data["x1"]),
        "x2": torch.tensor(views.data["x2"]),
        "y": torch.tensor(views.labels),
    }
    torch.manual_seed(11)
    loss, _ = net.loss(batch)
    torch.manual_seed(11)
    eps = torch.randn(N, LATENT).double().numpy()
    assert loss.item() == pytest.approx(hand_loss(weights, views, eps, preset), rel=2e-5)


def test_the_two_presets_differ_where_the_official_code_differs():
    views = tiny_views()
    losses = {}
    for preset in PRESETS:
        net = CMMD(
            preset=preset,
            latent_dim=LATENT,
            encoder_hidden=(HIDDEN,),
            prior_hidden=(HIDDEN,),
            decoder_hidden=(HIDDEN,),
            classifier_hidden=(HIDDEN,),
            dropout=0.0,
        ).build(DataSpec.from_views(views, CLASSES))
        random_weights(net)
        torch.manual_seed(0)
        losses[preset] = net.loss(
            {
                "x1": torch.tensor(views.data["x1"]),
                "x2": torch.tensor(views.data["x2"]),
                "y": torch.tensor(views.labels),
            }
        )[0].item()
    assert losses["paper"] != pytest.approx(losses["official"], rel=1e-3)


def test_a_preset_fills_the_fields_not_given_and_explicit_values_win():
    official = CMMDConfig(preset="official")
    assert {f: getattr(official, f) for f in PRESETS["official"]} == PRESETS["official"]
    overridden = CMMDConfig(preset="official", class_loss="mean", init_std=0.01)
    assert (overridden.class_loss, overridden.init_std, overridden.kl) == ("mean", 0.01, "official")
    # The fields' own defaults are the paper preset, so CMMD() is preset "paper".
    default = CMMDConfig()
    assert default.preset == "paper"
    assert {f: getattr(default, f) for f in PRESETS["paper"]} == PRESETS["paper"]
    assert {f: CMMDConfig.model_fields[f].default for f in PRESETS["paper"]} == PRESETS["paper"]
    # The resolved values round-trip (a run record's params rebuild the same config).
    assert CMMDConfig(**overridden.model_dump(mode="json")) == overridden


def test_an_unknown_preset_is_named_with_the_allowed_ones():
    with pytest.raises(
        ConfigError,
        match=r"cmmd: preset: Input should be 'paper' or "
        r"'official', got 'authors'",
    ):
        CMMD(preset="authors")
    with pytest.raises(ConfigError, match="classifier_input"):
        CMMD(classifier_input="prior")


def test_official_initialisation_draws_weights_with_standard_deviation_0_001():
    views = tiny_views()
    torch.manual_seed(0)
    net = CMMD(
        preset="official",
        latent_dim=8,
        encoder_hidden=(256,),
        prior_hidden=(256,),
        decoder_hidden=(256,),
        classifier_hidden=(64,),
    ).build(DataSpec.from_views(views, CLASSES))
    hidden = net.encoder[0][0].weight  # 256 x 8 weights: the std's standard error is ~1.4 %
    assert hidden.std().item() == pytest.approx(0.001, rel=0.06)
    assert abs(hidden.mean().item()) < 4 * 0.001 / np.sqrt(hidden.numel())
    for layer in net.modules():
        if isinstance(layer, torch.nn.Linear):
            assert torch.all(layer.bias == 0)
            assert layer.weight.abs().max().item() < 0.001 * 6
    # PyTorch's default (paper preset) is uniform within 1 / sqrt(fan_in), far wider.
    torch.manual_seed(0)
    default = CMMD(latent_dim=8, encoder_hidden=(256,)).build(DataSpec.from_views(views, CLASSES))
    assert default.encoder[0][0].weight.std().item() > 0.1
