"""MoPoE: the subsets, the products with the prior expert where the authors put it, the subset
mixture's density against an explicit loop, the loss against a plain VAE and against the
stratified sampling written out, posteriors, planted collapse, and training on real digits."""

import itertools

import numpy as np
import pytest
import torch
from scipy import special, stats
from torch.distributions import Bernoulli, Laplace, Normal, kl_divergence

from baselines.mopoe import MoPoE
from mmbench.experts import nonempty_subsets
from mmbench.metrics import collapse_curve, collapsed_dimensions, kl_to_standard_normal
from mmbench.model import DataSpec
from mmbench.trainer import TrainConfig
from mmbench.views import Modality, Views

SMALL = dict(latent_dim=3, hidden=(8,))


def small_views(n=16, names=("x1", "x2"), observed=1, seed=0):
    """x2 real (Gaussian), the other views in [0, 1] (Bernoulli)."""
    rng = np.random.default_rng(seed)
    data, modalities = {}, {}
    for i, m in enumerate(names):
        gaussian = m == "x2"
        data[m] = (
            rng.normal(size=(n, 5 + i)) if gaussian else rng.uniform(size=(n, 5 + i))
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
    return MoPoE(**{**SMALL, **params}).build(DataSpec.from_views(views, 3))


def tensors(views):
    return {m: torch.tensor(a) for m, a in views.data.items()}


def expert(net, m, x):
    """(mean, logvar) of q(z | x_m) written from the encoder's layers."""
    body, head = net.encoders[m]
    h = body(x)
    return head.mean(h), head.logvar(h)


def log_likelihood(net, m, z, x, likelihood):
    """log p(x_m | z) written from the decoder's layers with torch.distributions."""
    body, head = net.decoders[m]
    h = body(z)
    if likelihood == "laplace":
        mean = head.mean(h)
        if m != "x2":  # data in [0, 1]: a sigmoid mean, clamped away from 0 and 1
            mean = torch.sigmoid(mean).clamp(1e-6, 1 - 1e-6)
        return Laplace(mean, 0.75).log_prob(x).sum(-1)
    if m == "x2":
        return Normal(head.mean(h), 0.75).log_prob(x).sum(-1)
    return Bernoulli(logits=head.logits(h), validate_args=False).log_prob(x).sum(-1)


@pytest.mark.parametrize("n_modalities", [1, 2, 3, 4, 5, 6])
def test_there_are_two_to_the_m_minus_one_nonempty_subsets(n_modalities):
    mask = nonempty_subsets(n_modalities)
    subsets = {tuple(np.flatnonzero(row)) for row in mask.numpy()}
    assert mask.shape == (2**n_modalities - 1, n_modalities)
    assert len(subsets) == len(mask) and () not in subsets
    assert set(np.unique(mask.numpy())) <= {0.0, 1.0}
    assert mask[-1].tolist() == [1.0] * n_modalities  # the full set last
    with pytest.raises(ValueError, match="at least one modality"):
        nonempty_subsets(0)


def test_the_network_forms_a_product_for_every_subset():
    views = small_views(names=("x1", "x2", "x3"))
    posteriors = network(views).subset_posteriors(tensors(views))
    assert posteriors.batch_shape == (7, views.n)


@pytest.mark.parametrize("prior_expert", ["none", "joint", "all"])
@pytest.mark.parametrize("kl", ["bound", "sampled"])
@pytest.mark.parametrize("likelihood", ["laplace", "modality"])
def test_with_one_modality_the_loss_is_a_plain_vae_negative_elbo(prior_expert, kl, likelihood):
    views = small_views(names=("x1",))
    net = network(views, prior_expert=prior_expert, kl=kl, likelihood=likelihood, beta=2.5)
    batch = tensors(views)
    torch.manual_seed(7)
    loss, parts = net.loss(batch)
    torch.manual_seed(7)
    noise = torch.randn(views.n, 3)

    mean, logvar = expert(net, "x1", batch["x1"])
    variance = logvar.exp()
    if prior_expert != "none":  # the one subset is the full set: times N(0, I)
        mean, variance = mean / (1 + variance), variance / (1 + variance)
    q = Normal(mean, variance.sqrt())
    prior = Normal(torch.zeros(3), torch.ones(3))
    z = mean + variance.sqrt() * noise
    if kl == "bound":
        divergence = kl_divergence(q, prior).sum(-1)
    else:
        divergence = (q.log_prob(z) - prior.log_prob(z)).sum(-1)
    log_lik = log_likelihood(net, "x1", z, batch["x1"], likelihood)
    expected = (-log_lik + 2.5 * divergence).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert parts["kl"].item() == pytest.approx(divergence.mean().item(), rel=1e-5, abs=1e-6)


def explicit_products(experts, n_modalities, prior_expert):
    """{subset: (mean, variance)} of every non-empty subset, by precision-weighting in float64."""
    products = {}
    for size in range(1, n_modalities + 1):
        for subset in itertools.combinations(range(n_modalities), size):
            with_prior = prior_expert == "all" or (prior_expert == "joint" and size == n_modalities)
            precision = float(with_prior) + sum(np.exp(-experts[j][1]) for j in subset)
            weighted = sum(experts[j][0] * np.exp(-experts[j][1]) for j in subset)
            products[subset] = (weighted / precision, 1 / precision)
    return products


@pytest.mark.parametrize("prior_expert", ["none", "joint", "all"])
def test_subset_mixture_density_equals_an_explicit_loop_over_subsets(prior_expert):
    views = small_views(names=("x1", "x2", "x3"))
    net = network(views, prior_expert=prior_expert)
    batch = tensors(views)
    z = torch.randn(views.n, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = net.mixture_log_prob(z, net.subset_posteriors(batch)).numpy()
        experts = [
            [t.double().numpy() for t in expert(net, m, batch[m])] for m in ("x1", "x2", "x3")
        ]
    products = explicit_products(experts, 3, prior_expert)
    assert len(products) == 7
    log_densities = [
        stats.norm.logpdf(z.double().numpy(), mean, np.sqrt(variance)).sum(-1)
        for mean, variance in products.values()
    ]
    expected = special.logsumexp(log_densities, axis=0) - np.log(7)
    assert np.allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kl", ["bound", "sampled"])
def test_loss_draws_each_share_of_the_batch_from_its_subset(kl):
    """S = 3 subsets of 2 modalities, 9 points: points 0-2 draw from {x1}, 3-5 from {x2}, 6-8
    from {x1, x2} (with the prior expert); the KL is the mean over subsets, or the mixture's."""
    views = small_views(n=9)
    net = network(views, kl=kl, likelihood="modality", likelihood_weights={"x2": 0.5})
    batch = tensors(views)
    torch.manual_seed(3)
    loss, _ = net.loss(batch)
    torch.manual_seed(3)
    noise = torch.randn(9, 3)
    with torch.no_grad():
        experts = [[t.double().numpy() for t in expert(net, m, batch[m])] for m in ("x1", "x2")]
    products = list(explicit_products(experts, 2, "joint").values())
    share = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    rows = np.arange(9)
    means = np.stack([p[0] for p in products])  # (S, n, d)
    stds = np.sqrt(np.stack([p[1] for p in products]))
    z = means[share, rows] + stds[share, rows] * noise.double().numpy()
    if kl == "bound":
        divergence = np.mean(
            [(0.5 * (s**2 + m**2 - 1) - np.log(s)).sum(-1) for m, s in zip(means, stds)], axis=0
        )
    else:
        log_q = special.logsumexp(stats.norm.logpdf(z, means, stds).sum(-1), axis=0) - np.log(3)
        divergence = log_q - stats.norm.logpdf(z).sum(-1)
    z = torch.tensor(z, dtype=torch.float32)
    with torch.no_grad():
        log_lik = (
            log_likelihood(net, "x1", z, batch["x1"], "modality")
            + 0.5 * log_likelihood(net, "x2", z, batch["x2"], "modality")
        ).double()
    expected = (-log_lik.numpy() + divergence).mean()
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def fitted(views, **params):
    model = MoPoE(**{**SMALL, **params})
    model.fit(views, None, trainer=TrainConfig(epochs=1, batch_size=8, lr=1e-3))
    return model


@pytest.mark.parametrize("z_given_xM", ["missing", "joint"])
def test_posteriors_are_the_observed_subsets_product_and_the_missing_one_or_the_mixture(z_given_xM):
    views = small_views(names=("x1", "x3", "x2"), observed=2)  # x2 (Gaussian) missing
    model = fitted(views, z_given_xM=z_given_xM)
    batch = tensors(views)
    with torch.no_grad():
        experts = [
            [t.double().numpy() for t in expert(model.module_, m, batch[m])]
            for m in ("x1", "x3", "x2")
        ]
    products = explicit_products(experts, 3, "joint")
    posteriors = model.posteriors(views)
    # xO = {x1, x3}: not every modality, so no prior expert
    mean, variance = products[(0, 1)]
    assert np.allclose(posteriors.z_given_xO.mean, mean, atol=1e-5)
    assert np.allclose(posteriors.z_given_xO.logvar, np.log(variance), atol=1e-5)
    assert np.allclose(model.represent(views.xO), mean, atol=1e-5)
    if z_given_xM == "missing":
        mean, variance = products[(2,)]
    else:  # the mixture's mean and variance over its 7 products
        means = np.stack([p[0] for p in products.values()])
        variances = np.stack([p[1] for p in products.values()])
        mean = means.mean(0)
        variance = (variances + means**2).mean(0) - mean**2
    assert np.allclose(posteriors.z_given_xM.mean, mean, atol=1e-5)
    assert np.allclose(posteriors.z_given_xM.logvar, np.log(variance), atol=1e-4)
    # x2 is Gaussian and decoded by a Laplace of scale 0.75: variance 2 x 0.75^2
    assert posteriors.decoder_logvar.shape == (views.n, 7)
    assert np.allclose(posteriors.decoder_logvar, np.log(2 * 0.75**2))


def test_generate_decodes_the_observed_subsets_product_mean():
    views = small_views()
    model = fitted(views, likelihood="modality")
    net = model.module_
    with torch.no_grad():
        mean, _ = expert(net, "x1", tensors(views)["x1"])  # one of two: no prior expert
        body, head = net.decoders["x2"]
        expected = head.mean(body(mean)).numpy()
    assert np.allclose(model.generate(views.xO)["x2"], expected, atol=1e-5)
    assert np.allclose(model.posteriors(views).decoder_logvar, np.log(0.75**2))


def test_collapse_analysis_flags_exactly_the_planted_dimensions():
    views = small_views(n=200)
    model = fitted(views, latent_dim=5)
    planted = [1, 3]
    with torch.no_grad():
        for encoder in model.module_.encoders.values():
            head = encoder[1]
            for layer in (head.mean, head.logvar):
                layer.weight.zero_()
            # Planted dimensions: the expert is N(0, 1), the prior; the others have variance
            # e^-4, so KL >= 0.5 (e^-4 - 1 + 4) > 1 nat whatever the mean.
            head.logvar.bias.fill_(-4.0)
            head.logvar.bias[planted] = 0.0
            head.mean.bias.normal_()
            head.mean.bias[planted] = 0.0
    posteriors = model.posteriors(views)
    for stats_ in (posteriors.z_given_xO, posteriors.z_given_xM):
        kl = kl_to_standard_normal(stats_)
        assert list(collapsed_dimensions(kl, eps=1e-6)) == planted
        assert list(collapsed_dimensions(kl, eps=1.0)) == planted
        assert np.allclose(collapse_curve(kl, np.array([1e-6, 1.0])), [2 / 5, 2 / 5])


@pytest.mark.parametrize("third_view", [False, True], ids=["two-views", "three-views"])
def test_trains_on_embedded_mnist_and_returns_documented_shapes(
    request, check_trained_on_digits, third_view
):
    train, valid, test = request.getfixturevalue("digits_three_views" if third_view else "digits")
    model = MoPoE(latent_dim=8, hidden=(64,))
    report = model.fit(train, valid, trainer=TrainConfig(epochs=3, batch_size=100, lr=1e-3))
    assert report.epochs == 3
    posteriors = check_trained_on_digits(model, report, test, latent_dim=8)
    assert posteriors.z_given_xM.logvar.shape == (test.n, 8)
    assert posteriors.decoder_logvar.shape == (test.n, 784)


def test_bad_hyper_parameters_are_one_line_errors():
    with pytest.raises(
        ValueError,
        match=r"^mopoe: kl: Input should be 'bound' or 'sampled', "
        r"got 'exact'$",
    ):
        MoPoE(kl="exact")
    with pytest.raises(
        ValueError,
        match=r"^mopoe: prior_expert: Input should be 'joint', 'none' "
        r"or 'all', got 'some'$",
    ):
        MoPoE(prior_expert="some")
    with pytest.raises(ValueError, match=r"^mopoe: beta: .* greater than or equal to 0"):
        MoPoE(beta=-1.0)
    with pytest.raises(ValueError, match="likelihood_weights names"):
        network(small_views(), likelihood_weights={"x9": 2.0})
