"""MVAE: its sub-sampled objective against the formulas written out, KL annealing, one encoding
per modality, posteriors, planted posterior collapse, and training on real digits."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from baselines.mvae import MVAE
from mmbench.metrics import collapse_curve, collapsed_dimensions, kl_to_standard_normal
from mmbench.model import DataSpec
from mmbench.trainer import Progress, TrainConfig
from mmbench.views import Modality, Views

SMALL = dict(latent_dim=3, hidden=(8,), activation="relu")


def small_views(n=16, names=("x1", "x2"), seed=0, observed=1):
    """x1 in [0, 1] (Bernoulli), x2 real (Gaussian), further views in [0, 1]."""
    rng = np.random.default_rng(seed)
    data, modalities = {}, {}
    for i, m in enumerate(names):
        gaussian = m == "x2"
        data[m] = rng.normal(size=(n, 5 + i)) if gaussian else rng.uniform(size=(n, 5 + i))
        data[m] = data[m].astype(np.float32)
        modalities[m] = Modality("gaussian" if gaussian else "bernoulli")
    return Views(
        data,
        tuple(names[:observed]),
        tuple(names[observed:]),
        rng.integers(0, 3, n),
        modalities=modalities,
    )


def network(views, **params):
    model = MVAE(**{**SMALL, **params})
    torch.manual_seed(0)
    return model.build(DataSpec.from_views(views, 3))


def tensors(views):
    return {m: torch.tensor(a) for m, a in views.data.items()}


def encoder_stats(net, m, x):
    body, head = net.encoders[m]
    h = body(x)
    return head.mean(h), head.logvar(h)


def test_loss_is_the_sum_of_the_joint_and_single_modality_elbos():
    views = small_views()
    # One annealing epoch of 4 steps: the first step weighs the KL by 1/4.
    net = network(views, annealing_epochs=1)
    batch = tensors(views)
    torch.manual_seed(7)
    loss, parts = net.loss(batch, Progress(epoch=1, step=0, steps_per_epoch=4, epochs=10))
    torch.manual_seed(7)
    noise = torch.randn(3, views.n, 3)

    (mu1, lv1), (mu2, lv2) = (encoder_stats(net, m, batch[m]) for m in ("x1", "x2"))
    t1, t2 = torch.exp(-lv1), torch.exp(-lv2)
    # Precision-weighted products with the prior N(0, 1) (precision 1, mean 0).
    products = [
        ((mu1 * t1 + mu2 * t2) / (1 + t1 + t2), 1 / (1 + t1 + t2)),
        (mu1 * t1 / (1 + t1), 1 / (1 + t1)),
        (mu2 * t2 / (1 + t2), 1 / (1 + t2)),
    ]
    reconstructed = [("x1", "x2"), ("x1",), ("x2",)]

    def log_lik(m, z):
        body, head = net.decoders[m]
        h = body(z)
        x = batch[m]
        if m == "x1":
            logits = head.logits(h)
            return (x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)).sum(1)
        mean, logvar = head.mean(h), head.logvar.expand_as(x)
        return -0.5 * (np.log(2 * np.pi) + logvar + (x - mean) ** 2 / logvar.exp()).sum(1)

    expected = 0.0
    for (mean, var), names, eps in zip(products, reconstructed, noise):
        z = mean + var.sqrt() * eps
        kl = 0.5 * (var + mean**2 - 1 - var.log()).sum(1)
        expected = expected + (-sum(log_lik(m, z) for m in names) + 0.25 * kl).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert parts["kl_weight"].item() == pytest.approx(0.25)


def test_kl_weight_rises_linearly_per_step_and_is_one_in_evaluation():
    views = small_views()
    net = network(views, annealing_epochs=2)
    batch = tensors(views)
    net.train()
    weights = [
        net.loss(batch, Progress(step // 3 + 1, step, 3, 5))[1]["kl_weight"].item()
        for step in range(8)
    ]
    assert weights == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1, 1, 1])
    # the weight is (step + 1) / 6 rounded to float32 once, as the KL it multiplies
    assert weights[0] == np.float32(1 / 6)
    net.eval()
    assert net.loss(batch, None)[1]["kl_weight"].item() == 1.0
    assert (
        network(views, annealing_epochs=0).loss(batch, Progress(1, 0, 3, 5))[1]["kl_weight"].item()
        == 1.0
    )


def test_fit_anneals_over_the_configured_epochs():
    views = small_views(n=30)
    model = MVAE(**SMALL, annealing_epochs=2)
    report = model.fit(views, None, trainer=TrainConfig(epochs=3, batch_size=10, lr=1e-3))
    # 3 steps per epoch, 6 annealing steps: epoch means of (1,2,3)/6, (4,5,6)/6, then 1.
    assert [row["kl_weight"] for row in report.history] == pytest.approx([1 / 3, 5 / 6, 1.0])


def test_each_modality_is_encoded_once_and_each_decoder_runs_once():
    views = small_views(names=("x1", "x2", "x3"))
    net = network(views, n_random_subsets=2)
    calls = {"encoders": [], "decoders": []}
    for kind in calls:
        for module in getattr(net, kind).values():
            module.register_forward_hook(
                lambda mod, inputs, out, kind=kind: calls[kind].append(inputs[0].shape)
            )
    net.train()
    net.loss(tensors(views))
    assert len(calls["encoders"]) == 3 and len(calls["decoders"]) == 3
    # Subsets: the joint one, three single ones, two random pairs; each decoder decodes the
    # samples of the subsets that contain its modality: 3 + 3 + 2 x 2 in all.
    assert sum(shape[0] for shape in calls["decoders"]) == 10
    assert all(shape[1:] == (views.n, 3) for shape in calls["decoders"])
    calls["decoders"].clear()
    net.eval()  # the validation loss leaves the random subsets out
    net.loss(tensors(views))
    assert sum(shape[0] for shape in calls["decoders"]) == 3 + 3


def test_random_subsets_have_two_to_m_minus_one_modalities():
    views = small_views(names=("x1", "x2", "x3", "x4"))
    net = network(views, n_random_subsets=50)
    net.train()
    torch.manual_seed(0)
    subsets = net.random_subsets()
    assert len(subsets) == 50
    assert all(2 <= len(s) <= 3 and len(set(s)) == len(s) for s in subsets)
    assert len(set(subsets)) == 6 + 4  # every pair and every triple of 4 modalities appears


def fitted(views, **params):
    model = MVAE(**{**SMALL, **params})
    model.fit(views, None, trainer=TrainConfig(epochs=1, batch_size=8, lr=1e-3))
    return model


def product_with_prior(means, logvars):
    precision = 1 + sum(np.exp(-lv) for lv in logvars)
    return sum(mu * np.exp(-lv) for mu, lv in zip(means, logvars)) / precision, -np.log(precision)


@pytest.mark.parametrize("z_given_xM", ["missing", "joint"])
def test_posteriors_are_the_products_given_xO_and_given_xM(z_given_xM):
    views = small_views(names=("x1", "x2", "x3"), observed=2)
    model = fitted(views, z_given_xM=z_given_xM)
    with torch.no_grad():
        stats = {
            m: [a.numpy() for a in encoder_stats(model.module_, m, torch.tensor(views.data[m]))]
            for m in views.data
        }
    given_xO = product_with_prior(*zip(*(stats[m] for m in ("x1", "x2"))))
    given_xM = product_with_prior(
        *zip(*(stats[m] for m in (("x3",) if z_given_xM == "missing" else ("x1", "x2", "x3"))))
    )
    posteriors = model.posteriors(views)
    assert np.allclose(posteriors.z_given_xO.mean, given_xO[0], atol=1e-5)
    assert np.allclose(posteriors.z_given_xO.logvar, given_xO[1], atol=1e-5)
    assert np.allclose(posteriors.z_given_xM.mean, given_xM[0], atol=1e-5)
    assert np.allclose(posteriors.z_given_xM.logvar, given_xM[1], atol=1e-5)
    assert np.allclose(model.represent(views.xO), given_xO[0], atol=1e-5)
    # x3 is Bernoulli: no Gaussian missing modality, no decoder variances.
    assert posteriors.decoder_logvar is None


def test_collapse_analysis_flags_exactly_the_planted_dimensions():
    views = small_views(n=200)
    model = fitted(views, latent_dim=5)
    planted = [1, 3]
    with torch.no_grad():
        for encoder in model.module_.encoders.values():
            head = encoder[1]
            for layer in (head.mean, head.logvar):
                layer.weight.zero_()
            # Planted dimensions: an expert with no precision (variance e^40), so the product
            # is the prior; the others: variance e^-4, so KL >= 0.5 (4 - 1) > 1 nat.
            head.logvar.bias.fill_(-4.0)
            head.logvar.bias[planted] = 40.0
            head.mean.bias.normal_()
    posteriors = model.posteriors(views)
    for stats in (posteriors.z_given_xO, posteriors.z_given_xM):
        kl = kl_to_standard_normal(stats)
        assert list(collapsed_dimensions(kl, eps=1.0)) == planted
        assert np.allclose(collapse_curve(kl, np.array([1e-6, 1.0])), [2 / 5, 2 / 5])


@pytest.mark.parametrize("third_view", [False, True], ids=["two-views", "three-views"])
def test_trains_on_embedded_mnist_and_returns_documented_shapes(
    request, check_trained_on_digits, third_view
):
    train, valid, test = request.getfixturevalue("digits_three_views" if third_view else "digits")
    model = MVAE(latent_dim=8, hidden=(64,), annealing_epochs=2)
    report = model.fit(train, valid, trainer=TrainConfig(epochs=3, batch_size=100, lr=1e-3))
    assert report.epochs == 3
    posteriors = check_trained_on_digits(model, report, test, latent_dim=8)
    assert posteriors.z_given_xM.logvar.shape == (test.n, 8)
    assert posteriors.decoder_logvar.shape == (test.n, 784)


def test_bad_hyper_parameters_are_one_line_errors():
    with pytest.raises(
        ValueError, match=r"^mvae: z_given_xM: Input should be 'missing' or 'joint', got 'both'$"
    ):
        MVAE(z_given_xM="both")
    with pytest.raises(ValueError, match=r"^mvae: latent_dim: .* greater than or equal to 1"):
        MVAE(latent_dim=0)
    with pytest.raises(ValueError, match=r"^mvae: likelihood_weights: x2: .* greater than or "):
        MVAE(likelihood_weights={"x2": -1.0})
    views = small_views()
    with pytest.raises(ValueError, match="likelihood_weights names"):
        network(views, likelihood_weights={"x9": 2.0})
