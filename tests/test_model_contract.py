"""Every registered model honours the interface: it trains on real embedded digits with finite
losses, its verbs return the documented shapes, and a checkpoint reloads to the same model."""
import numpy as np
import pytest

from mmbench.data import load_dataset
from mmbench.model import TorchModel
from mmbench.registry import available_models, make_model
from mmbench.trainer import TrainConfig
from mmbench.views import Modality

# Small networks, so that each model trains in seconds.
SMALL_PARAMS = {
    "cmmd": dict(latent_dim=6, encoder_hidden=(32,), prior_hidden=(32,), decoder_hidden=(32,),
                 classifier_hidden=(16,)),
    "mxo": dict(hidden=(32,), latent_dim=6, classifier_hidden=(16,)),
    "cca": dict(n_components=6),
    "dcca": dict(latent_dim=6, hidden=(32,)),
    "dccae": dict(latent_dim=6, hidden=(32,)),
    "vcca": dict(latent_dim=6, hidden=(32,)),
    "vcca_private": dict(latent_dim=6, private_dim=4, hidden=(32,)),
    "mvae": dict(latent_dim=6, hidden=(32,)),
    "mmvae_elbo": dict(latent_dim=6, hidden=(32,)),
    "mmvae_iwae": dict(latent_dim=6, hidden=(32,), K=3),
}
MULTI_MODALITY_MODELS = {"cmmd", "mxo", "cca", "dcca", "dccae", "vcca", "vcca_private", "mvae",
                         "mmvae_elbo", "mmvae_iwae"}


@pytest.fixture(scope="module")
def small_digits():
    return load_dataset("digits_embedded", seed=0)


def with_third_view(views, observed, missing):
    """``views`` plus x3, the clean digit of view 1 flipped left-right (bernoulli), with the
    given roles; one missing Gaussian and one missing Bernoulli view exercise both decoders."""
    flipped = views.data["x1"].reshape(-1, 8, 8)[:, :, ::-1].reshape(-1, 64)
    data = {**views.data, "x3": np.ascontiguousarray(flipped)}
    modalities = {**views.modalities, "x3": Modality("bernoulli", (8, 8))}
    return type(views)(data, observed, missing, views.labels, views.groups, modalities)


def check_contract(model, train, valid, test, n_classes):
    report = model.fit(train, valid, trainer=TrainConfig(epochs=2, batch_size=64, lr=1e-3),
                       n_classes=n_classes)
    assert report.epochs == 2 or report.stopped_by == "closed_form"
    assert all(np.isfinite(v) for row in report.history for v in row.values())
    z = model.represent(test.xO)
    assert z.ndim == 2 and z.shape[0] == test.n and np.isfinite(z).all()
    if "classify" in model.capabilities:
        probabilities = model.predict_proba(test.xO)
        assert probabilities.shape == (test.n, n_classes)
        assert np.allclose(probabilities.sum(1), 1.0, atol=1e-5)
    if "generate" in model.capabilities:
        generated = model.generate(test.xO)
        assert sorted(generated) == sorted(test.missing)
        for m in test.missing:
            assert generated[m].shape == test.data[m].shape and np.isfinite(generated[m]).all()
    if "posteriors" in model.capabilities:
        stats = model.posteriors(test)
        assert stats.z_given_xO.mean.shape == stats.z_given_xO.logvar.shape
        assert stats.z_given_xO.mean.shape[0] == test.n
    return z


@pytest.mark.parametrize("name", available_models())
def test_model_honours_the_interface_on_real_digits(name, small_digits, tmp_path):
    model = make_model(name, SMALL_PARAMS.get(name, {}))
    splits = small_digits
    z = check_contract(model, splits.train, splits.valid, splits.test, splits.n_classes)
    if isinstance(model, TorchModel):
        model.save(tmp_path / "checkpoint.pt")
        reloaded = type(model).load(tmp_path / "checkpoint.pt")
        assert np.allclose(reloaded.represent(splits.test.xO), z, atol=1e-6)


@pytest.mark.parametrize("roles", [(("x1", "x3"), ("x2",)), (("x1",), ("x2", "x3"))],
                         ids=["two-observed", "two-missing"])
@pytest.mark.parametrize("name", sorted(MULTI_MODALITY_MODELS))
def test_model_handles_three_modalities(name, roles, small_digits):
    splits = [with_third_view(getattr(small_digits, s), *roles) for s in ("train", "valid", "test")]
    check_contract(make_model(name, SMALL_PARAMS.get(name, {})), *splits, small_digits.n_classes)


def test_every_model_has_small_test_parameters():
    assert set(available_models()) <= set(SMALL_PARAMS)
