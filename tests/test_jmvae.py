"""JMVAE-kl: with alpha = 0 a joint VAE's negative ELBO, the KL terms against
torch.distributions and the closed form, test-time posteriors (unimodal, product, joint), planted
collapse, and training on real digits."""

import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from baselines.jmvae import JMVAE
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
    return JMVAE(**{**SMALL, **params}).build(DataSpec.from_views(views, 3))


def tensors(views):
    return {m: torch.tensor(a) for m, a in views.data.items()}


def gaussian(encoder, x):
    """(mean, logvar) written from an encoder's layers."""
    body, head = encoder
    h = body(x)
    return head.mean(h), head.logvar(h)


def joint(net, batch, names):
    return gaussian(net.joint_encoder, torch.cat([batch[m] for m in names], 1))


def log_likelihood(net, m, z, x):
    """log p(x_m | z): Bernoulli, or Gaussian with the learned shared variance."""
    body, head = net.decoders[m]
    h = body(z)
    if m == "x2":
        return Normal(head.mean(h), head.logvar.exp().sqrt()).log_prob(x).sum(-1)
    return Bernoulli(logits=head.logits(h), validate_args=False).log_prob(x).sum(-1)


def gaussian_kl(mean_q, logvar_q, mean_p, logvar_p):
    """KL(N(mean_q, var_q) || N(mean_p, var_p)) summed over dimensions, written out."""
    return 0.5 * (
        logvar_p - logvar_q + (logvar_q.exp() + (mean_q - mean_p) ** 2) / logvar_p.exp() - 1
    ).sum(-1)


def test_with_alpha_zero_the_loss_is_a_joint_vae_negative_elbo():
    views = small_views()
    net = network(views, alpha=0.0, likelihood_weights={"x2": 2.0})
    batch = tensors(views)
    torch.manual_seed(7)
    loss, parts = net.loss(batch)
    torch.manual_seed(7)
    noise = torch.randn(views.n, 3)

    mean, logvar = joint(net, batch, ("x1", "x2"))
    z = mean + (0.5 * logvar).exp() * noise
    q = Normal(mean, (0.5 * logvar).exp())
    kl = kl_divergence(q, Normal(torch.zeros(3), torch.ones(3))).sum(-1)
    log_lik = log_likelihood(net, "x1", z, batch["x1"]) + 2.0 * log_likelihood(
        net, "x2", z, batch["x2"]
    )
    assert loss.item() == pytest.approx((kl - log_lik).mean().item(), rel=1e-5)
    assert parts["kl"].item() == pytest.approx(kl.mean().item(), rel=1e-5)
    # the unimodal encoders take no part in a joint VAE
    loss.backward()
    for parameter in net.encoders.parameters():
        assert torch.count_nonzero(parameter.grad) == 0
    assert all(torch.count_nonzero(p.grad) > 0 for p in net.joint_encoder.parameters())


def test_kl_terms_equal_kl_divergence_computed_separately():
    views = small_views(names=("x1", "x2", "x3"))
    net = network(views, alpha=0.3)
    batch = tensors(views)
    torch.manual_seed(11)
    loss, parts = net.loss(batch)
    torch.manual_seed(11)
    noise = torch.randn(views.n, 3)

    mean, logvar = joint(net, batch, ("x1", "x2", "x3"))
    q = Normal(mean, (0.5 * logvar).exp())
    terms = []
    for m in ("x1", "x2", "x3"):
        mean_m, logvar_m = gaussian(net.encoders[m], batch[m])
        term = kl_divergence(q, Normal(mean_m, (0.5 * logvar_m).exp())).sum(-1)
        # the direction is KL(q(z|X) || q(z|x_m)), as the closed form says
        assert torch.allclose(term, gaussian_kl(mean, logvar, mean_m, logvar_m), rtol=1e-4)
        assert not torch.allclose(term, gaussian_kl(mean_m, logvar_m, mean, logvar), rtol=1e-2)
        terms.append(term)
    kl_unimodal = sum(terms)
    assert parts["kl_unimodal"].item() == pytest.approx(kl_unimodal.mean().item(), rel=1e-5)
    z = mean + (0.5 * logvar).exp() * noise
    kl = gaussian_kl(mean, logvar, torch.zeros(3), torch.zeros(3))
    log_lik = sum(log_likelihood(net, m, z, batch[m]) for m in ("x1", "x2", "x3"))
    expected = (kl - log_lik + 0.3 * kl_unimodal).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # with alpha > 0 the KL terms train the unimodal encoders
    loss.backward()
    assert all(torch.count_nonzero(p.grad) > 0 for p in net.encoders.parameters())


def fitted(views, **params):
    model = JMVAE(**{**SMALL, **params})
    model.fit(views, None, trainer=TrainConfig(epochs=1, batch_size=8, lr=1e-3))
    return model


def product(stats):
    """The product of Gaussian experts (mean, logvar) without a prior expert, in float64."""
    precision = sum(np.exp(-logvar) for _, logvar in stats)
    mean = sum(mu * np.exp(-logvar) for mu, logvar in stats) / precision
    return mean, -np.log(precision)


@pytest.mark.parametrize("z_given_xM", ["missing", "joint"])
def test_posteriors_use_the_unimodal_encoders_or_their_product(z_given_xM):
    views = small_views(names=("x1", "x3", "x2"), observed=2)  # x2 (Gaussian) missing
    model = fitted(views, z_given_xM=z_given_xM)
    net, batch = model.module_, tensors(views)
    with torch.no_grad():
        stats = {
            m: [t.double().numpy() for t in gaussian(net.encoders[m], batch[m])]
            for m in ("x1", "x3", "x2")
        }
        joint_stats = [t.numpy() for t in joint(net, batch, ("x1", "x3", "x2"))]
    posteriors = model.posteriors(views)
    mean, logvar = product([stats["x1"], stats["x3"]])
    assert np.allclose(posteriors.z_given_xO.mean, mean, atol=1e-5)
    assert np.allclose(posteriors.z_given_xO.logvar, logvar, atol=1e-5)
    assert np.allclose(model.represent(views.xO), mean, atol=1e-5)
    mean, logvar = stats["x2"] if z_given_xM == "missing" else joint_stats
    assert np.allclose(posteriors.z_given_xM.mean, mean, atol=1e-5)
    assert np.allclose(posteriors.z_given_xM.logvar, logvar, atol=1e-5)
    with torch.no_grad():
        head = net.decoders["x2"][1]
        assert np.allclose(posteriors.decoder_logvar, head.logvar.numpy(), atol=1e-6)


def test_one_observed_modality_uses_its_encoder_and_all_observed_the_joint_encoder():
    views = small_views()
    model = fitted(views)
    net, batch = model.module_, tensors(views)
    with torch.no_grad():
        mean_x1 = gaussian(net.encoders["x1"], batch["x1"])[0]
        body, head = net.decoders["x2"]
        expected_x2 = head.mean(body(mean_x1)).numpy()
    assert np.allclose(model.represent(views.xO), mean_x1.numpy(), atol=1e-5)
    assert np.allclose(model.generate(views.xO)["x2"], expected_x2, atol=1e-5)
    every = small_views(observed=2)
    model = fitted(every)
    with torch.no_grad():
        mean_joint = joint(model.module_, tensors(every), ("x1", "x2"))[0].numpy()
    assert np.allclose(model.represent(every.xO), mean_joint, atol=1e-6)
    assert model.generate(every.xO) == {} and model.posteriors(every).z_given_xM is None


def test_collapse_analysis_flags_exactly_the_planted_dimensions():
    views = small_views(n=200)
    model = fitted(views, latent_dim=5)
    planted = [0, 4]
    with torch.no_grad():
        for encoder in model.module_.encoders.values():
            head = encoder[1]
            for layer in (head.mean, head.logvar):
                layer.weight.zero_()
            # Planted dimensions: the encoder is N(0, 1); the others have variance e^-4, so
            # KL >= 0.5 (e^-4 - 1 + 4) > 1 nat whatever the mean.
            head.logvar.bias.fill_(-4.0)
            head.logvar.bias[planted] = 0.0
            head.mean.bias.normal_()
            head.mean.bias[planted] = 0.0
    posteriors = model.posteriors(views)
    for stats in (posteriors.z_given_xO, posteriors.z_given_xM):
        kl = kl_to_standard_normal(stats)
        assert list(collapsed_dimensions(kl, eps=1e-5)) == planted
        assert list(collapsed_dimensions(kl, eps=1.0)) == planted
        assert np.allclose(collapse_curve(kl, np.array([1e-5, 1.0])), [2 / 5, 2 / 5])


@pytest.mark.parametrize("third_view", [False, True], ids=["two-views", "three-views"])
def test_trains_on_embedded_mnist_and_returns_documented_shapes(
    request, check_trained_on_digits, third_view
):
    train, valid, test = request.getfixturevalue("digits_three_views" if third_view else "digits")
    model = JMVAE(latent_dim=8, hidden=(64,))
    report = model.fit(train, valid, trainer=TrainConfig(epochs=3, batch_size=100, lr=1e-3))
    assert report.epochs == 3
    posteriors = check_trained_on_digits(model, report, test, latent_dim=8)
    assert posteriors.z_given_xM.logvar.shape == (test.n, 8)
    assert posteriors.decoder_logvar.shape == (test.n, 784)


def test_bad_hyper_parameters_are_one_line_errors():
    with pytest.raises(ValueError, match=r"^jmvae: alpha: .* greater than or equal to 0"):
        JMVAE(alpha=-0.1)
    with pytest.raises(
        ValueError,
        match=r"^jmvae: z_given_xM: Input should be 'missing' or "
        r"'joint', got 'both'$",
    ):
        JMVAE(z_given_xM="both")
    with pytest.raises(ValueError, match="likelihood_weights names"):
        network(small_views(), likelihood_weights={"x9": 2.0})
