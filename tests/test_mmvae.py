"""MMVAE: log-weights against scipy densities, stratified sampling, one decoder call per modality,
the objectives, DReG wiring, moment-matched posteriors, planted collapse, and training on digits."""

import numpy as np
import pytest
import torch
from scipy import stats

from baselines.mmvae import MMVAE, MMVAEIWAE, MMVAEConfig
from mmbench.metrics import collapse_curve, collapsed_dimensions, kl_to_standard_normal
from mmbench.model import DataSpec
from mmbench.trainer import TrainConfig
from mmbench.views import Modality, Views

SMALL = dict(latent_dim=3, hidden=(8,))


def small_views(n=16, seed=0, observed=("x1",), missing=("x2",)):
    """x1 in [0, 1] ("bernoulli"), x2 real ("gaussian")."""
    rng = np.random.default_rng(seed)
    return Views(
        {
            "x1": rng.uniform(size=(n, 6)).astype(np.float32),
            "x2": rng.normal(size=(n, 5)).astype(np.float32),
        },
        observed,
        missing,
        rng.integers(0, 3, n),
        modalities={"x1": Modality("bernoulli"), "x2": Modality("gaussian")},
    )


def network(views, cls=MMVAE, **params):
    torch.manual_seed(0)
    net = cls(**{**SMALL, **params}).build(DataSpec.from_views(views, 3))
    with torch.no_grad():  # a prior that is not the default N(0, 1)-like Laplace(0, 1)
        net.prior_raw_scale.copy_(torch.tensor([0.3, -0.5, 0.1]))
    return net


def tensors(views):
    return {m: torch.tensor(a) for m, a in views.data.items()}


def softmax_scale(raw):
    e = np.exp(raw - raw.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True) * raw.shape[-1]


def expert_params(net, m, x):
    """(loc, scale) of q(z | x_m) written from the layers: scale = softmax(raw) * D + 1e-6."""
    body, expert = net.encoders[m]
    h = body(x)
    scale = softmax_scale(expert.raw_scale(h).detach().numpy()) + 1e-6
    return expert.loc(h).detach().numpy(), scale


def decoder_mean(net, m, z):
    body, head = net.decoders[m]
    mean = head.mean(body(torch.tensor(z)))
    if m == "x1":  # data in [0, 1]: sigmoid, clamped away from 0 and 1
        mean = torch.sigmoid(mean).clamp(1e-6, 1 - 1e-6)
    return mean.detach().numpy()


def test_log_weights_match_scipy_densities():
    views = small_views()
    net = network(views, K=3, likelihood_weights={"x2": 2.5})
    batch = tensors(views)
    log_w, z = net.log_weights(batch, detach_posterior=False)
    assert log_w.shape == (3, 2, views.n) and z.shape == (3, 2, views.n, 3)
    z = z.detach().numpy().astype(np.float64)
    prior_scale = softmax_scale(np.array([0.3, -0.5, 0.1]))
    experts = [expert_params(net, m, batch[m]) for m in ("x1", "x2")]
    expected = stats.laplace.logpdf(z, 0.0, prior_scale).sum(-1)
    # Mixture: the mean over both experts of each sample's density, in log.
    densities = [np.exp(stats.laplace.logpdf(z, loc, scale).sum(-1)) for loc, scale in experts]
    expected -= np.log(np.mean(densities, axis=0))
    for m, weight in (("x1", 1.0), ("x2", 2.5)):
        mean = decoder_mean(net, m, z.astype(np.float32))
        expected += weight * stats.laplace.logpdf(views.data[m], mean, 0.75).sum(-1)
    assert np.allclose(log_w.detach().numpy(), expected, rtol=1e-4, atol=1e-3)


def test_samples_are_stratified_over_the_experts_in_one_reparameterised_call(monkeypatch):
    views = small_views(n=2)
    net = network(views, K=4000)
    calls = []
    rsample = torch.distributions.Laplace.rsample
    monkeypatch.setattr(
        torch.distributions.Laplace,
        "rsample",
        lambda self, *a, **k: calls.append(1) or rsample(self, *a, **k),
    )
    _, z = net.log_weights(tensors(views), detach_posterior=False)
    assert len(calls) == 1
    z = z.detach().numpy()
    for j, m in enumerate(("x1", "x2")):
        loc, scale = expert_params(net, m, tensors(views)[m])
        # Laplace(loc, b): mean loc (standard deviation sqrt(2) b) and E|z - loc| = b
        # (standard deviation b); 5 standard errors over the K = 4000 samples of expert j.
        standard_error = scale / np.sqrt(4000)
        assert np.all(np.abs(z[:, j].mean(0) - loc) < 5 * np.sqrt(2) * standard_error)
        assert np.all(np.abs(np.abs(z[:, j] - loc).mean(0) - scale) < 5 * standard_error)


def test_each_decoder_runs_once_on_all_samples():
    views = small_views()
    net = network(views, K=5)
    shapes = []
    for decoder in net.decoders.values():
        decoder.register_forward_hook(lambda mod, inputs, out: shapes.append(inputs[0].shape))
    net.loss(tensors(views))
    assert shapes == [(5 * 2, views.n, 3)] * 2


@pytest.mark.parametrize(
    "objective,looser",
    [("elbo", False), ("iwae", False), ("iwae", True), ("dreg", False), ("dreg", True)],
)
def test_objectives_are_their_bounds_of_the_log_weights(objective, looser):
    views = small_views()
    net = network(views, K=4, objective=objective, looser=looser)
    batch = tensors(views)
    torch.manual_seed(3)
    loss, parts = net.loss(batch)
    torch.manual_seed(3)
    log_w = net.log_weights(batch, detach_posterior=False)[0].detach().double()  # (K, M, b)
    if objective == "elbo":
        bound = log_w.mean((0, 1))
    elif looser:
        bound = (torch.logsumexp(log_w, 0) - np.log(4)).mean(0)
    else:
        bound = torch.logsumexp(log_w.flatten(0, 1), 0) - np.log(8)
    assert loss.item() == pytest.approx(-bound.mean().item(), rel=1e-5)
    assert parts[objective].item() == pytest.approx(bound.mean().item(), rel=1e-5)


def test_dreg_changes_the_encoder_gradient_but_not_the_decoder_and_prior_ones():
    views = small_views()
    grads = {}
    for objective in ("iwae", "dreg"):
        net = network(views, K=6, objective=objective)
        torch.manual_seed(5)
        net.loss(tensors(views))[0].backward()
        grads[objective] = {name: p.grad.clone() for name, p in net.named_parameters()}
    for name, grad in grads["iwae"].items():
        same = torch.allclose(grad, grads["dreg"][name], rtol=1e-4, atol=1e-6)
        assert same == (not name.startswith("encoders")), name


def test_dreg_encoder_gradient_weighs_the_path_through_z_by_squared_normalised_weights():
    """Tucker et al.'s Eq. 7 for the stratified bound: the encoders reach the bound only through
    z, with weight (w_mk / sum w)^2 on d log w_mk / dz."""
    views = small_views()
    net = network(views, K=6, objective="dreg")
    encoders = list(net.encoders.parameters())
    torch.manual_seed(5)
    got = torch.autograd.grad(net.loss(tensors(views))[0], encoders)
    torch.manual_seed(5)
    log_w, _ = net.log_weights(tensors(views), detach_posterior=True)
    weights = torch.softmax(log_w.detach().flatten(0, 1), dim=0).reshape(log_w.shape)
    surrogate = -(weights**2 * log_w).sum((0, 1)).mean()
    expected = torch.autograd.grad(surrogate, encoders)
    for g, e in zip(got, expected):
        assert torch.allclose(g, e, rtol=1e-4, atol=1e-6)


def fitted(views, cls=MMVAE, **params):
    model = cls(**{**SMALL, **params})
    model.fit(views, None, trainer=TrainConfig(epochs=1, batch_size=8, lr=1e-3))
    return model


@pytest.mark.parametrize("likelihood", ["laplace", "modality"])
def test_posteriors_are_moment_matched_laplace_mixtures(likelihood):
    views = small_views()
    model = fitted(views, z_given_xM="joint", likelihood=likelihood)
    (loc1, b1), (loc2, b2) = (
        expert_params(model.module_, m, tensors(views)[m]) for m in ("x1", "x2")
    )
    posteriors = model.posteriors(views)
    assert np.allclose(posteriors.z_given_xO.mean, loc1, atol=1e-6)
    assert np.allclose(posteriors.z_given_xO.logvar, np.log(2 * b1**2), atol=1e-5)
    # The joint mixture: E[z] and E[z^2] - E[z]^2 with E[z^2] = mean over experts of 2 b^2 + loc^2.
    mean = (loc1 + loc2) / 2
    variance = (2 * b1**2 + loc1**2 + 2 * b2**2 + loc2**2) / 2 - mean**2
    assert np.allclose(posteriors.z_given_xM.mean, mean, atol=1e-6)
    assert np.allclose(posteriors.z_given_xM.logvar, np.log(variance), atol=1e-4)
    decoder_variance = 2 * 0.75**2 if likelihood == "laplace" else 0.75**2
    assert np.allclose(posteriors.decoder_logvar, np.log(decoder_variance))
    assert posteriors.decoder_logvar.shape == (views.n, 5)


@pytest.mark.parametrize("learned", ["shared", "input"])
def test_learned_decoder_variances_are_reported_as_planted(learned):
    """A planted log-variance of x2's Gaussian decoder (per feature; for "input" the bias of a
    log-variance head whose weights are zero) is what posteriors reports, at every point."""
    views = small_views()
    model = fitted(views, likelihood="modality", likelihood_scale=learned)
    planted = torch.tensor([-3.0, -1.0, 0.0, 0.5, 2.0])
    head = model.module_.decoders["x2"][1]
    with torch.no_grad():
        if learned == "shared":
            head.logvar.copy_(planted)
        else:
            head.logvar.weight.zero_()
            head.logvar.bias.copy_(planted)
    logvar = model.posteriors(views).decoder_logvar
    assert logvar.shape == (views.n, 5)
    assert np.allclose(logvar, planted.numpy()[None, :], atol=1e-6)


def test_a_learned_shared_variance_is_stationary_at_the_mean_squared_residual():
    """The Gaussian log-likelihood's maximiser over a shared variance is, in closed form, the
    mean squared residual of the decoder mean over the samples and the batch: the gradient of
    the loss with respect to x2's log-variance vanishes there (and only there)."""
    views = small_views(n=32)
    net = network(views, K=3, likelihood="modality", likelihood_scale="shared")
    batch = tensors(views)
    torch.manual_seed(4)
    _, z = net.log_weights(batch, detach_posterior=False)
    with torch.no_grad():
        mean = net.decoders["x2"](z.reshape(-1, views.n, 3)).mean  # (K*M, b, 5)
        residual = ((mean - batch["x2"]) ** 2).mean((0, 1))
    logvar = net.decoders["x2"][1].logvar
    for offset, stationary in ((0.0, True), (0.3, False)):
        with torch.no_grad():
            logvar.copy_(residual.log() + offset)
        net.zero_grad()
        torch.manual_seed(4)  # the same samples z (they do not depend on the decoder)
        net.loss(batch)[0].backward()
        # d loss / d logvar_d = (1 - residual_d / exp(logvar_d)) / 2 (likelihood weight 1)
        expected = 0.5 * (1 - residual / (residual * np.exp(offset)))
        assert torch.allclose(logvar.grad, expected, atol=1e-5)
        assert torch.allclose(logvar.grad, torch.zeros(5), atol=1e-5) == stationary


def test_two_observed_modalities_represent_and_generate_from_their_experts_mean():
    views = small_views(observed=("x1", "x2"), missing=())
    model = fitted(views)
    locs = [expert_params(model.module_, m, tensors(views)[m])[0] for m in ("x1", "x2")]
    assert np.allclose(model.represent(views.xO), (locs[0] + locs[1]) / 2, atol=1e-6)
    assert model.generate(views.xO) == {}
    assert model.posteriors(views).z_given_xM is None


def test_collapse_analysis_flags_exactly_the_planted_dimensions():
    views = small_views(n=200)
    model = fitted(views, latent_dim=4)
    planted = [0, 2]
    # Planted dimensions: loc 0 and b = 1/sqrt(2), so the moment-matched Gaussian is N(0, 1);
    # the softmax scales sum to D = 4, leaving b = (4 - sqrt(2)) / 2 to the others, whose locs
    # are at least 2 away from 0: KL >= 2 nats.
    scale = np.full(4, (4 - np.sqrt(2)) / 2)
    scale[planted] = 1 / np.sqrt(2)
    with torch.no_grad():
        for m in ("x1", "x2"):
            expert = model.module_.encoders[m][1]
            expert.loc.weight.zero_()
            expert.raw_scale.weight.zero_()
            expert.raw_scale.bias.copy_(torch.tensor(np.log(scale)))
            expert.loc.bias.copy_(torch.tensor([0.0, 2.5, 0.0, -2.0]))
    posteriors = model.posteriors(views)
    for stats_ in (posteriors.z_given_xO, posteriors.z_given_xM):
        kl = kl_to_standard_normal(stats_)
        assert list(collapsed_dimensions(kl, eps=1e-4)) == planted
        assert list(collapsed_dimensions(kl, eps=1.0)) == planted
        assert np.allclose(collapse_curve(kl, np.array([1e-4, 1.0])), [0.5, 0.5])


@pytest.mark.parametrize(
    "cls,third_view",
    [(MMVAE, False), (MMVAEIWAE, False), (MMVAEIWAE, True)],
    ids=["elbo", "iwae", "iwae-three-views"],
)
def test_trains_on_embedded_mnist_and_returns_documented_shapes(
    request, check_trained_on_digits, cls, third_view
):
    train, valid, test = request.getfixturevalue("digits_three_views" if third_view else "digits")
    model = cls(latent_dim=8, hidden=(64,), **({"K": 3} if cls is MMVAEIWAE else {}))
    report = model.fit(
        train, valid, trainer=TrainConfig(epochs=3, batch_size=100, lr=1e-3, amsgrad=True)
    )
    posteriors = check_trained_on_digits(model, report, test, latent_dim=8)
    assert posteriors.z_given_xM.logvar.shape == (test.n, 8)


def test_bad_hyper_parameters_are_one_line_errors():
    with pytest.raises(
        ValueError,
        match=r"^mmvae_elbo: objective: Input should be 'elbo', "
        r"'iwae' or 'dreg', got 'vimco'$",
    ):
        MMVAE(objective="vimco")
    with pytest.raises(ValueError, match=r"^mmvae_elbo: looser: .* elbo objective"):
        MMVAE(objective="elbo", looser=True)
    with pytest.raises(
        ValueError,
        match=r"^mmvae_elbo: likelihood_scale: Input should be "
        r"'shared' or 'input' or a number > 0, got 0.0$",
    ):
        MMVAE(likelihood_scale=0.0)
    with pytest.raises(
        ValueError,
        match=r"^mmvae_elbo: likelihood_scale: .* with likelihood "
        r"'laplace'; .* set likelihood: modality",
    ):
        MMVAE(likelihood_scale="shared")


def test_the_iwae_variant_is_the_elbo_config_with_other_defaults():
    iwae, elbo = MMVAEIWAE().config, MMVAE().config
    assert (iwae.objective, iwae.K, elbo.objective, elbo.K) == ("dreg", 10, "elbo", 1)
    assert isinstance(iwae, MMVAEConfig)
    assert MMVAEIWAE().get_params() == {**MMVAE().get_params(), "objective": "dreg", "K": 10}
    # the same fields, ranges and docs; only the defaults differ
    fields = MMVAEIWAE.config_class.model_fields
    assert fields["K"].description == MMVAEConfig.model_fields["K"].description
    with pytest.raises(ValueError, match="K: Input should be greater than or equal to 1"):
        MMVAEIWAE(K=0)
    assert MMVAEIWAE(objective="iwae", K=4).config.K == 4
