"""MMVAE+: without modality-specific latents it is MMVAE on the same samples, log-weights against
scipy densities, cross-modal reconstructions through the auxiliary priors, the DReG gradient
against the IWAE gradient in expectation, moment-matched posteriors, planted collapse, and
training on real digits."""

import math

import numpy as np
import pytest
import torch
from scipy import special, stats

from baselines.mmvae import MMVAE
from baselines.mmvae_plus import MMVAEPlus
from mmbench.metrics import collapse_curve, collapsed_dimensions, kl_to_standard_normal
from mmbench.model import DataSpec
from mmbench.trainer import TrainConfig
from mmbench.views import Modality, Views

SMALL = dict(latent_dim=3, private_dim=2, hidden=(8,))


def small_views(n=16, names=("x1", "x2"), observed=1, seed=0, width=5):
    """x2 real (Gaussian), the other views in [0, 1] (Bernoulli)."""
    rng = np.random.default_rng(seed)
    data, modalities = {}, {}
    for i, m in enumerate(names):
        gaussian = m == "x2"
        data[m] = (
            rng.normal(size=(n, width + i)) if gaussian else rng.uniform(size=(n, width + i))
        ).astype(np.float32)
        modalities[m] = Modality("gaussian" if gaussian else "bernoulli")
    return Views(
        data,
        tuple(names[:observed]),
        tuple(names[observed:]),
        rng.integers(0, 3, n),
        modalities=modalities,
    )


def network(views, **params):
    torch.manual_seed(0)
    return MMVAEPlus(**{**SMALL, **params}).build(DataSpec.from_views(views, 3))


def tensors(views):
    return {m: torch.tensor(a) for m, a in views.data.items()}


def softmax_scale(raw):
    e = np.exp(raw - raw.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True) * raw.shape[-1]


def laplace_params(layers, h):
    """(loc, scale) of a Laplace expert written from its layers: scale = softmax(raw) D + 1e-6."""
    scale = softmax_scale(layers.raw_scale(h).detach().double().numpy()) + 1e-6
    return layers.loc(h).detach().double().numpy(), scale


def expert_params(net, m, x):
    """((loc, scale) of q(w_m | x_m), (loc, scale) of q(z | x_m))."""
    body, expert = net.encoders[m]
    h = body(x)
    return laplace_params(expert.private, h), laplace_params(expert, h)


def decoder_mean(net, m, code):
    body, head = net.decoders[m]
    mean = head.mean(body(torch.as_tensor(code, dtype=torch.float32)))
    if m != "x2":  # data in [0, 1]: a sigmoid mean, clamped away from 0 and 1
        mean = torch.sigmoid(mean).clamp(1e-6, 1 - 1e-6)
    return mean.detach().double().numpy()


def record_decoder_inputs(net):
    """Modality -> the list of inputs its decoder is called with."""
    inputs = {m: [] for m in net.decoders}
    for m, decoder in net.decoders.items():
        decoder.register_forward_hook(
            lambda module, args, out, m=m: inputs[m].append(args[0].detach())
        )
    return inputs


@pytest.mark.parametrize("objective", ["iwae", "dreg"])
@pytest.mark.parametrize("looser", [True, False])
def test_without_modality_specific_latents_the_objective_is_mmvaes_on_the_same_samples(
    objective, looser
):
    views = small_views()
    spec = DataSpec.from_views(views, 3)
    params = dict(
        latent_dim=3,
        hidden=(8,),
        objective=objective,
        K=3,
        looser=looser,
        likelihood_weights={"x2": 2.0},
    )
    torch.manual_seed(0)
    mmvae = MMVAE(**params).build(spec)  # its prior at initialisation: Laplace(0, 1)
    plus = MMVAEPlus(**params, private_dim=0).build(spec)
    shared = {k: v for k, v in mmvae.state_dict().items() if k != "prior_raw_scale"}
    missing, unexpected = plus.load_state_dict(shared, strict=False)
    assert missing == ["auxiliary_raw_scale"] and unexpected == []
    batch = tensors(views)
    losses, gradients = [], []
    for net in (mmvae, plus):
        torch.manual_seed(5)
        loss, _ = net.loss(batch)
        names = list(shared)
        parameters = dict(net.named_parameters())
        losses.append(loss.item())
        gradients.append(
            dict(zip(names, torch.autograd.grad(loss, [parameters[k] for k in names])))
        )
    assert losses[1] == pytest.approx(losses[0], rel=1e-6)
    for name in shared:
        assert torch.allclose(gradients[1][name], gradients[0][name], rtol=1e-5, atol=1e-7), name


def test_log_weights_match_scipy_densities():
    views = small_views()
    net = network(views, K=3, beta=0.7, likelihood_weights={"x2": 2.5})
    with torch.no_grad():
        net.auxiliary_raw_scale.copy_(torch.tensor([[0.4, -0.3], [-1.0, 0.8]]))
    batch = tensors(views)
    inputs = record_decoder_inputs(net)
    log_w, u = net.log_weights(batch, detach_posterior=False)
    assert log_w.shape == (3, 2, views.n) and u.shape == (3, 2, views.n, 2 + 3)
    u = u.detach().double().numpy()
    w, z = u[..., :2], u[..., 2:]
    experts = [expert_params(net, m, batch[m]) for m in ("x1", "x2")]
    expected = stats.laplace.logpdf(u).sum(-1)  # p(w) p(z) = Laplace(0, 1)
    # log q(z | X): the mixture of both experts' q(z | x_m) at every sample
    log_q_z = [stats.laplace.logpdf(z, loc, scale).sum(-1) for _, (loc, scale) in experts]
    expected -= special.logsumexp(log_q_z, axis=0) - np.log(2)
    # log q(w_r | x_r) of the expert r that drew the sample
    for r, ((loc, scale), _) in enumerate(experts):
        expected[:, r] -= stats.laplace.logpdf(w[:, r], loc, scale).sum(-1)
    expected *= 0.7
    for d, (m, weight) in enumerate((("x1", 1.0), ("x2", 2.5))):
        code = inputs[m][0].double().numpy().reshape(3, 2, views.n, 5)
        assert np.allclose(code[..., 2:], z, atol=1e-6)  # the shared z of each sample
        assert np.allclose(code[:, d, :, :2], w[:, d], atol=1e-6)  # its own w_d reconstructs x_d
        assert not np.allclose(code[:, 1 - d, :, :2], w[:, 1 - d])  # the other: w_d ~ r_d
        mean = decoder_mean(net, m, code)
        expected += weight * stats.laplace.logpdf(views.data[m], mean, 0.75).sum(-1)
    assert np.allclose(log_w.detach().numpy(), expected, rtol=1e-4, atol=1e-3)


def test_cross_modal_reconstructions_draw_w_from_the_auxiliary_prior():
    views = small_views(n=2)
    net = network(views, K=4000, private_dim=3)
    rho = torch.tensor([[0.5, -1.0, 0.2], [0.0, 1.0, -0.5]])
    with torch.no_grad():
        net.auxiliary_raw_scale.copy_(rho)
    inputs = record_decoder_inputs(net)
    loss, _ = net.loss(tensors(views))
    for d, m in enumerate(("x1", "x2")):
        other = 1 - d
        w = inputs[m][0].numpy().reshape(4000, 2, 2, 6)[:, other, :, :3].reshape(-1, 3)
        # Laplace(0, b_d): mean 0 (standard deviation sqrt(2) b_d), E|w| = b_d (standard
        # deviation b_d); 5 standard errors over the 8,000 draws
        b = softmax_scale(rho[d].numpy())
        standard_error = b / math.sqrt(len(w))
        assert np.all(np.abs(w.mean(0)) < 5 * math.sqrt(2) * standard_error)
        assert np.all(np.abs(np.abs(w).mean(0) - b) < 5 * standard_error)
    # the auxiliary priors' scales learn through their reparameterised samples
    loss.backward()
    assert torch.count_nonzero(net.auxiliary_raw_scale.grad) == 6


@pytest.fixture
def one_thread():
    """Many tiny steps: one thread (two spin-wait on a busy machine, many times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def paired_gradients(names, K, groups=200):
    """(DReG, IWAE) gradients of a tiny MMVAE+ on ``groups`` noise draws, the two estimators on
    the same draw: {parameter name: (groups, size)} each."""
    views = small_views(n=8, names=names, observed=len(names), width=3)
    params = dict(latent_dim=2, private_dim=2, hidden=(4,), activation="tanh", K=K)
    nets = {
        objective: network(views, objective=objective, **params) for objective in ("dreg", "iwae")
    }
    batch = tensors(views)
    draws: dict[str, dict[str, list]] = {"dreg": {}, "iwae": {}}
    for group in range(groups):
        for objective, net in nets.items():
            torch.manual_seed(group)
            named = dict(net.named_parameters())
            grads = torch.autograd.grad(net.loss(batch)[0], list(named.values()), allow_unused=True)
            for name, grad in zip(named, grads):
                grad = torch.zeros_like(named[name]) if grad is None else grad
                draws[objective].setdefault(name, []).append(grad.flatten().double())
    return (
        {name: torch.stack(rows) for name, rows in draws["dreg"].items()},
        {name: torch.stack(rows) for name, rows in draws["iwae"].items()},
    )


@pytest.mark.parametrize(
    "names,K", [(("x1",), 4), (("x1", "x2"), 1)], ids=["one-modality-K4", "two-modalities-K1"]
)
def test_dreg_gradient_agrees_in_expectation_with_the_iwae_gradient(names, K, one_thread):
    """Where DReG is exact (one modality, or K = 1: then the mixture's score terms average to
    0 over the stratified experts), the encoders' DReG gradient has the IWAE gradient's mean;
    every other parameter (decoders, auxiliary priors) gets the IWAE gradient on every draw."""
    dreg, iwae = paired_gradients(names, K)
    encoders = [name for name in dreg if name.startswith("encoders")]
    assert encoders and len(encoders) < len(dreg)
    for name in dreg:
        if name not in encoders:
            assert torch.allclose(dreg[name], iwae[name], rtol=1e-5, atol=1e-7), name
    difference = torch.cat([dreg[name] - iwae[name] for name in encoders], 1)  # (groups, p)
    assert difference.abs().max() > 1e-3  # the estimators differ draw by draw
    # (a weight of a hidden unit that no input activates has no gradient in either)
    varies = difference.std(0) > 0
    assert varies.sum() > 0.8 * difference.shape[1]
    standard_error = difference[:, varies].std(0) / math.sqrt(len(difference))
    t = difference[:, varies].mean(0) / standard_error
    assert torch.all(t.abs() < 4.5), t
    assert torch.all(difference[:, ~varies] == 0)
    # and its variance is lower (Tucker et al.'s point)
    assert sum(dreg[n].var(0).sum() for n in encoders) < sum(iwae[n].var(0).sum() for n in encoders)


def fitted(views, **params):
    model = MMVAEPlus(**{**SMALL, **params})
    model.fit(views, None, trainer=TrainConfig(epochs=1, batch_size=8, lr=1e-3))
    return model


@pytest.mark.parametrize("likelihood", ["laplace", "modality"])
def test_posteriors_are_moment_matched_mixtures_of_the_shared_experts(likelihood):
    views = small_views()
    model = fitted(views, z_given_xM="joint", likelihood=likelihood)
    (_, (loc1, b1)), (_, (loc2, b2)) = (
        expert_params(model.module_, m, tensors(views)[m]) for m in ("x1", "x2")
    )
    posteriors = model.posteriors(views)
    assert np.allclose(posteriors.z_given_xO.mean, loc1, atol=1e-6)
    assert np.allclose(posteriors.z_given_xO.logvar, np.log(2 * b1**2), atol=1e-5)
    assert np.allclose(model.represent(views.xO), loc1, atol=1e-6)
    mean = (loc1 + loc2) / 2
    variance = (2 * b1**2 + loc1**2 + 2 * b2**2 + loc2**2) / 2 - mean**2
    assert np.allclose(posteriors.z_given_xM.mean, mean, atol=1e-6)
    assert np.allclose(posteriors.z_given_xM.logvar, np.log(variance), atol=1e-4)
    decoder_variance = 2 * 0.75**2 if likelihood == "laplace" else 0.75**2
    assert np.allclose(posteriors.decoder_logvar, np.log(decoder_variance))
    assert posteriors.decoder_logvar.shape == (views.n, 6)


def test_generate_decodes_the_shared_mean_with_w_at_its_prior_mean():
    views = small_views(names=("x1", "x3", "x2"), observed=2)
    model = fitted(views, likelihood="modality")
    locs = [expert_params(model.module_, m, tensors(views)[m])[1][0] for m in ("x1", "x3")]
    z = (locs[0] + locs[1]) / 2
    assert np.allclose(model.represent(views.xO), z, atol=1e-6)
    code = np.concatenate([np.zeros((views.n, 2)), z], 1)
    with torch.no_grad():
        body, head = model.module_.decoders["x2"]
        expected = head.mean(body(torch.tensor(code, dtype=torch.float32))).numpy()
    assert np.allclose(model.generate(views.xO)["x2"], expected, atol=1e-5)


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


@pytest.mark.parametrize("third_view", [False, True], ids=["two-views", "three-views"])
def test_trains_on_embedded_mnist_and_returns_documented_shapes(
    request, check_trained_on_digits, third_view
):
    train, valid, test = request.getfixturevalue("digits_three_views" if third_view else "digits")
    model = MMVAEPlus(latent_dim=8, private_dim=4, hidden=(64,), K=2)
    report = model.fit(
        train, valid, trainer=TrainConfig(epochs=3, batch_size=100, lr=1e-3, amsgrad=True)
    )
    posteriors = check_trained_on_digits(model, report, test, latent_dim=8)
    assert posteriors.z_given_xM.logvar.shape == (test.n, 8)


def test_bad_hyper_parameters_are_one_line_errors():
    with pytest.raises(
        ValueError,
        match=r"^mmvae_plus: objective: Input should be 'iwae' or "
        r"'dreg', got 'elbo'$",
    ):
        MMVAEPlus(objective="elbo")
    with pytest.raises(
        ValueError,
        match=r"^mmvae_plus: private_dim: .* greater than or equal "
        r"to 0",
    ):
        MMVAEPlus(private_dim=-1)
    with pytest.raises(ValueError, match="likelihood_weights names"):
        network(small_views(), likelihood_weights={"x9": 2.0})
