"""Every registered model honours the interface: it trains on real embedded digits with two and
three modalities with finite losses, its verbs return the documented shapes, a checkpoint reloads
to the same model, and its hyper-parameters are declared in a documented config. The models come
from the registry (built-in ones and installed plug-ins alike), each trained with the
``test_params`` its config declares; a case a model declares it cannot handle (``unsupported``)
is skipped with its reason. The README's example plug-in goes through the same machinery."""

import re
from pathlib import Path

import numpy as np
import pytest

from baselines.mxo import MxO
from mmbench.config import ModelConfig, describe
from mmbench.data import load_dataset
from mmbench.model import DataSpec, TorchModel
from mmbench.registry import available_models, builtin_models, config_class, model_class
from mmbench.trainer import TrainConfig
from mmbench.views import Modality

README = Path(__file__).parents[1] / "README.md"
THREE_VIEW_ROLES = {"two-observed": (("x1", "x3"), ("x2",)), "two-missing": (("x1",), ("x2", "x3"))}


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


def contract_splits(digits, roles: str | None) -> list:
    """(train, valid, test) of the small digits: two views, or three with ``roles``."""
    splits = [getattr(digits, s) for s in ("train", "valid", "test")]
    if roles is None:
        return splits
    return [with_third_view(views, *THREE_VIEW_ROLES[roles]) for views in splits]


def run_contract(name: str, splits: list, n_classes: int, checkpoint: Path | None = None):
    """Train the registered model ``name`` with its ``test_params`` on ``splits`` and check the
    interface; skips (with the model's reason) data the model declares it cannot handle."""
    cls = model_class(name)
    model = cls(**cls.config_class.test_params)
    train, valid, test = splits
    reason = model.unsupported(DataSpec.from_views(train, n_classes))
    if reason is not None:
        pytest.skip(f"{name}: {reason}")
    report = model.fit(
        train, valid, trainer=TrainConfig(epochs=2, batch_size=64, lr=1e-3), n_classes=n_classes
    )
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
    if checkpoint is not None and isinstance(model, TorchModel):
        model.save(checkpoint)
        reloaded = type(model).load(checkpoint)
        assert reloaded.config == model.config
        assert np.allclose(reloaded.represent(test.xO), z, atol=1e-6)


@pytest.mark.parametrize("name", available_models())
def test_model_honours_the_interface_on_real_digits(name, small_digits, tmp_path):
    run_contract(
        name,
        contract_splits(small_digits, None),
        small_digits.n_classes,
        tmp_path / "checkpoint.pt",
    )


@pytest.mark.parametrize("name", available_models())
def test_model_trains_under_bfloat16_autocast_close_to_float32(name, small_digits):
    """``train.precision: bfloat16`` works for every model: its first epoch's training loss is
    finite and within 5 % of the float32 run's from the same seed (closed-form models ignore it).
    """
    cls = model_class(name)
    losses = {}
    for precision in ("float32", "bfloat16"):
        model = cls(**cls.config_class.test_params)
        settings = TrainConfig(epochs=1, batch_size=64, lr=1e-3, precision=precision)
        report = model.fit(small_digits.train, small_digits.valid, trainer=settings, n_classes=10)
        if report.stopped_by == "closed_form":
            pytest.skip(f"{name} has no training step")
        losses[precision] = report.history[0]["loss"]
        assert np.isfinite(model.represent(small_digits.test.xO)).all()
    assert np.isfinite(losses["bfloat16"])
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=0.05, abs=0.05)


@pytest.mark.parametrize("roles", list(THREE_VIEW_ROLES))
@pytest.mark.parametrize("name", available_models())
def test_model_handles_three_modalities(name, roles, small_digits):
    run_contract(name, contract_splits(small_digits, roles), small_digits.n_classes)


@pytest.mark.parametrize("name", available_models())
def test_model_declares_its_hyper_parameters_in_a_documented_config(name):
    cls = model_class(name)
    config = config_class(name)
    assert issubclass(config, ModelConfig) and config is cls.config_class
    for field in describe(config):
        assert field.doc, f"{name}: {field.name} has no description"
    model = cls(**config.test_params)
    assert isinstance(model.config, config)
    assert cls(**model.get_params()).config == model.config  # JSON-able values round-trip


def test_mmbench_registers_its_models_through_entry_points():
    assert builtin_models() == [
        "cca",
        "cmmd",
        "dcca",
        "dccae",
        "jmvae",
        "mean_xm",
        "mmvae_elbo",
        "mmvae_iwae",
        "mmvae_plus",
        "mopoe",
        "mvae",
        "mxo",
        "raw_xo",
        "ridge_xo_xm",
        "vcca",
        "vcca_private",
    ]
    assert set(builtin_models()) <= set(available_models())


def readme_example() -> tuple[str, str, str]:
    """The README's example model: (its code, the entry-point name, the entry-point target)."""
    text = README.read_text()
    code = re.search(r"```python\n(# mymodel\.py\n.*?)```", text, re.DOTALL).group(1)
    name, target = re.search(
        r'\[project\.entry-points\."mmbench\.models"\]\n'
        r'(\w+) = "([\w.]+:\w+)"',
        text,
    ).groups()
    return code, name, target


@pytest.fixture
def readme_plugin(tmp_path, monkeypatch, register_model) -> str:
    """The README's example model, written to a module and registered by its entry point."""
    code, name, target = readme_example()
    (tmp_path / f"{target.split(':')[0]}.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    register_model(name, target)
    return name


@pytest.mark.parametrize("roles", [None, *THREE_VIEW_ROLES])
def test_the_readme_example_plugin_is_registered_and_honours_the_contract(
    readme_plugin, roles, small_digits, tmp_path
):
    assert readme_plugin in available_models() and readme_plugin not in builtin_models()
    run_contract(
        readme_plugin,
        contract_splits(small_digits, roles),
        small_digits.n_classes,
        tmp_path / "checkpoint.pt",
    )


def test_the_readme_example_learns_the_best_linear_prediction(readme_plugin):
    """On the linear-Gaussian views, whose E[x2 | x1] is linear of rank 5 (the latent's size),
    the example's rank-8 linear map must predict x2 as well as the exact E[x2 | x1] does."""
    splits = load_dataset("synthetic", seed=0, n_train=4000, n_valid=200, n_test=1000)
    model = model_class(readme_plugin)()
    model.fit(
        splits.train, None, trainer=TrainConfig(epochs=150, batch_size=2000, lr=0.05, patience=None)
    )
    test = splits.test
    best = splits.info["model"].expected_x2_given_x1(test.data["x1"])
    ours = model.generate(test.xO)["x2"]
    best_error = np.mean((best - test.data["x2"]) ** 2)
    assert np.mean((ours - test.data["x2"]) ** 2) < 1.02 * best_error
    assert np.mean((ours - best) ** 2) < 0.02 * best_error


class TwoModalitiesOnly(MxO):
    """A plug-in that says it cannot handle more than two modalities."""

    name = "two_only"

    def unsupported(self, spec: DataSpec) -> str | None:
        return "two modalities only" if len(spec.modalities) > 2 else None


def test_a_plugin_that_declares_data_unsupported_is_skipped_with_its_reason(
    register_model, small_digits
):
    register_model("two_only", f"{__name__}:TwoModalitiesOnly")
    assert "two_only" in available_models()
    run_contract("two_only", contract_splits(small_digits, None), small_digits.n_classes)
    with pytest.raises(pytest.skip.Exception, match="two_only: two modalities only"):
        run_contract(
            "two_only", contract_splits(small_digits, "two-observed"), small_digits.n_classes
        )
